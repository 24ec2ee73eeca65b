"""The fine walk: the cycle f1 → f2 → f1' again, locally, at 1/2 resolution, for the fine-match step.

For each fine cell p of f1 the walk's first hop is a softmax over the (2r+1)² fine cells of f2
around p's coarse match (the global walk's first hop, read within ``coarse_window`` cells of its
argmax, detached: what the tracker's read-out gives the step at test time). Its second hop is, for
each of those cells q, a softmax over the (2r+1)² cells of f1' around ℓ(p), where the crop affine
sends p. The walk must come home: the loss is the cross-entropy of the walk's distribution
``P(p → ·) = Σ_q A1[p, q] A2[q, ·]`` against ℓ(p) spread bilinearly over its four nearest cells,
so the trained expectation lands at the continuous ℓ(p), not at its rounded cell: this is what
teaches sub-cell positions. The labels come from the same affine as the global walk's, at fine
resolution and without rounding; no other supervision.

Only rows whose coarse walk comes back within r fine cells of ℓ(p) count (and whose ℓ(p) lies in
f1'): elsewhere the fine window in f2 most likely misses p's true match, and the row would teach
noise. Of those, at most ``max_rows`` per image are walked, evenly spread.
"""

from __future__ import annotations

import torch

from gmrw.models.fine import (
    coarse_flow_at,
    gather_window,
    grid_positions,
    masked_softmax,
    window_centers,
    window_offsets,
)
from gmrw.models.matching import flow_from_transition

LOG_EPS = 1e-7
#: Rows of the fine walk per image (see :func:`fine_walk_loss`).
MAX_ROWS = 512


def fine_labels(affine_b2f: torch.Tensor, fine_xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Where the crop affine sends fine positions of the forward crop, in the backward crop.

    affine_b2f (B, 2, 3) (normalised, corner-aligned coordinates of the ``image_size`` (H, W)
    crops; :mod:`gmrw.data.crops`); fine_xy (B, P, 2) fine cells (x, y) → (B, P, 2) fine cells,
    continuous. Fine cell i is model pixel 2i (see :mod:`gmrw.models.fine`).
    """
    height, width = image_size
    span = torch.tensor([max(width - 1, 1), max(height - 1, 1)], device=fine_xy.device, dtype=torch.float32)
    normalised = 2.0 * fine_xy.float() / span * 2.0 - 1.0  # pixel 2i → [-1, 1]
    affine = affine_b2f.float()
    moved = normalised @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]
    return (moved + 1.0) / 2.0 * span / 2.0


def bilinear_targets(labels: torch.Tensor, centers: torch.Tensor, radius: int) -> torch.Tensor:
    """Continuous labels (B, P, 2) → (B, P, K) target distributions over the windows of radius r
    centred at ``centers`` (B, P, 2) (the labels' nearest cells): bilinear weights of the four
    cells around each label."""
    side = 2 * radius + 1
    base = torch.floor(labels)
    frac = labels - base
    out = labels.new_zeros(*labels.shape[:2], side * side)
    for dx in (0, 1):
        for dy in (0, 1):
            weight = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
            offset = (base + labels.new_tensor([dx, dy])).long() - centers
            index = (offset[..., 1] + radius) * side + (offset[..., 0] + radius)
            out.scatter_add_(2, index.clamp(0, side * side - 1).unsqueeze(-1), weight.unsqueeze(-1))
    return out


def spread_rows(counted: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Indices of the True entries of ``counted`` (P,), at most ``max_rows`` of them, evenly
    spread over the image (deterministic: no random stream is drawn)."""
    rows = torch.nonzero(counted).flatten()
    if rows.numel() > max_rows:
        rows = rows[torch.linspace(0, rows.numel() - 1, max_rows, device=rows.device).round().long()]
    return rows


def fine_walk_loss(
    fine: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    first: torch.Tensor,
    second: torch.Tensor,
    cells: tuple[int, int],
    affine_b2f: torch.Tensor,
    image_size: tuple[int, int],
    radius: int,
    coarse_window: float,
    max_rows: int = MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """The fine walk's loss and how well it walks.

    Args:
        fine: fine maps (B, Cf, H2, W2) of f1, f2, f1' (:meth:`gmrw.models.GMRW.walk_with_fine`).
        first, second: the global walk's hops (B, N, N) (only read, without gradient).
        cells: (h, w) of the global walk.
        affine_b2f: (B, 2, 3) the clip's crop affine; image_size: (H, W) of the crops.
        radius: the windows' radius r (fine cells); coarse_window: the coarse read-out's window.
        max_rows: counted rows walked per image, evenly spread (the walk's cost is
            O(rows · (2r+1)⁴ · Cf); 512 rows of a 128² crop's 4096 give the same gradient direction
            at an eighth of the cost).

    Returns:
        0-d tensors: ``loss`` (mean cross-entropy over the walked rows), ``accuracy`` (percent of
        them whose walk peaks at ℓ(p)'s nearest cell), ``error`` (mean distance, in fine cells, of
        the walk's expected return from ℓ(p)), ``rows`` (fraction of rows counted, before the cap).
    """
    f1, f2, f3 = fine
    b, c, h2, w2 = f1.shape
    h, w = cells
    scale = c**-0.5
    offsets = window_offsets(radius, f1.device)
    grid = grid_positions(h2, w2, f1.device).expand(b, -1, -1)
    with torch.no_grad():
        flow1 = flow_from_transition(first.detach().float(), h, w, "weighted_argmax", coarse_window)
        flow2 = flow_from_transition(second.detach().float(), h, w, "weighted_argmax", coarse_window)
        middle = grid + coarse_flow_at(flow1, grid)  # p's coarse match in f2
        back = middle + coarse_flow_at(flow2, middle)  # and where the coarse walk returns
        labels = fine_labels(affine_b2f, grid, image_size)
        on_map = (labels >= 0).all(-1) & (labels[..., 0] <= w2 - 1) & (labels[..., 1] <= h2 - 1)
        counted = on_map & ((back - labels).abs().amax(-1) <= radius)
        rows = [spread_rows(counted[i], max_rows) for i in range(b)]

    nll, home, error = [], [], []
    for i, picked in enumerate(rows):
        if not picked.numel():
            continue
        label = labels[i, picked][None]  # (1, R, 2)
        centers1 = window_centers(middle[i, picked][None], h2, w2)
        centers2 = window_centers(label, h2, w2)
        keys1, inside1 = gather_window(f2[i : i + 1], centers1, offsets)  # (1, R, K, C)
        keys2, inside2 = gather_window(f3[i : i + 1], centers2, offsets)  # (1, R, L, C)
        queries = f1[i].flatten(1).t()[picked][None] * scale  # (1, R, C)
        a1 = masked_softmax(torch.einsum("bpc,bpkc->bpk", queries, keys1), inside1)
        a2 = masked_softmax(torch.einsum("bpkc,bplc->bpkl", keys1 * scale, keys2), inside2.unsqueeze(2))
        walk = torch.einsum("bpk,bpkl->bpl", a1, a2)[0]  # (R, L)
        with torch.no_grad():
            targets = bilinear_targets(label, centers2, radius)[0]
            home.append(walk.argmax(-1) == radius * (2 * radius + 1) + radius)  # the window's centre
            expected = centers2[0].float() + walk @ offsets.float()
            error.append((expected - label[0]).norm(dim=-1))
        nll.append(-(targets * torch.log(walk + LOG_EPS)).sum(-1))
    if not nll:  # no coarse walk came home (an untrained model): nothing to learn from yet
        zero = f1.sum() * 0.0
        return {
            "loss": zero,
            "accuracy": zero.detach(),
            "error": zero.detach(),
            "rows": counted.float().mean(),
        }
    with torch.no_grad():
        accuracy = 100.0 * torch.cat(home).float().mean()
        mean_error = torch.cat(error).mean()
    return {
        "loss": torch.cat(nll).mean(),
        "accuracy": accuracy,
        "error": mean_error,
        "rows": counted.float().mean(),
    }
