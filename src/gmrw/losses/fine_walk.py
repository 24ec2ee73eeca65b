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

from typing import NamedTuple

import torch

from gmrw.models.fine import (
    LocalMaps,
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


class LocalWalk(NamedTuple):
    """One level's walk on R rows: ``nll`` (R,) the loss per row; ``middle`` (R, 2) the first hop's
    expected position (detached), the next level's window centre; ``home`` (R,) bool, the walk
    peaks at the label's nearest cell; ``error`` (R,) distance of its expected return from the label."""

    nll: torch.Tensor
    middle: torch.Tensor
    home: torch.Tensor
    error: torch.Tensor


def local_walk(
    queries: torch.Tensor,
    middle_map: torch.Tensor,
    end_map: torch.Tensor,
    middle_xy: torch.Tensor,
    labels: torch.Tensor,
    radius: int,
    temperature: float,
) -> LocalWalk:
    """The walk p → (2r+1)² cells around ``middle_xy`` in the middle frame → (2r+1)² cells around
    ``labels`` in the end frame, for R rows of one image.

    queries (R, C): the start frame's features at the rows; middle_map, end_map (1, C, H, W);
    middle_xy (R, 2): where the window of the first hop is centred; labels (R, 2): where the crop
    affine sends the rows (continuous), all in cells of the maps.
    """
    scale = 1.0 / temperature
    offsets = window_offsets(radius, queries.device)
    h, w = end_map.shape[-2:]
    centers1 = window_centers(middle_xy[None], h, w)
    centers2 = window_centers(labels[None], h, w)
    keys1, inside1 = gather_window(middle_map, centers1, offsets)  # (1, R, K, C)
    keys2, inside2 = gather_window(end_map, centers2, offsets)  # (1, R, L, C)
    a1 = masked_softmax(torch.einsum("bpc,bpkc->bpk", queries[None] * scale, keys1), inside1)
    a2 = masked_softmax(torch.einsum("bpkc,bplc->bpkl", keys1 * scale, keys2), inside2.unsqueeze(2))
    walk = torch.einsum("bpk,bpkl->bpl", a1, a2)[0]  # (R, L)
    with torch.no_grad():
        targets = bilinear_targets(labels[None], centers2, radius)[0]
        middle = centers1[0].float() + a1[0] @ offsets.float()
        home = walk.argmax(-1) == radius * (2 * radius + 1) + radius  # the window's centre cell
        error = (centers2[0].float() + walk @ offsets.float() - labels).norm(dim=-1)
    nll = -(targets * torch.log(walk + LOG_EPS)).sum(-1)
    return LocalWalk(nll, middle, home, error)


def fine_walk_loss(
    fine: tuple[LocalMaps, LocalMaps, LocalMaps],
    first: torch.Tensor,
    second: torch.Tensor,
    cells: tuple[int, int],
    affine_b2f: torch.Tensor,
    image_size: tuple[int, int],
    radius: int,
    coarse_window: float,
    temperature: float,
    pixel_radius: int = 2,
    max_rows: int = MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """The fine walk's loss and how well it walks.

    Args:
        fine: the step's maps of f1, f2, f1' (:meth:`gmrw.models.GMRW.walk_with_fine`).
        first, second: the global walk's hops (B, N, N) (only read, without gradient).
        cells: (h, w) of the global walk.
        affine_b2f: (B, 2, 3) the clip's crop affine; image_size: (H, W) of the crops.
        radius: the windows' radius r (fine cells); coarse_window: the coarse read-out's window;
        temperature: the softmaxes' (the features are unit vectors); pixel_radius: the
            full-resolution level's windows' (pixels), when the maps have that level.
        max_rows: counted rows walked per image, evenly spread (the walk's cost is
            O(rows · (2r+1)⁴ · Cf); 512 rows of a 128² crop's 4096 give the same gradient direction
            at an eighth of the cost).

    Returns:
        0-d tensors: ``loss`` (mean cross-entropy over the walked rows, both levels' summed),
        ``accuracy`` (percent of them whose 1/2-resolution walk peaks at ℓ(p)'s nearest cell),
        ``error`` (mean distance, in fine cells, of that walk's expected return from ℓ(p)),
        ``rows`` (fraction of rows counted, before the cap); with the full-resolution level also
        ``pixel_loss`` and ``pixel_error`` (pixels).
    """
    f1, f2, f3 = fine
    b, c, h2, w2 = f1.half.shape
    h, w = cells
    grid = grid_positions(h2, w2, f1.half.device).expand(b, -1, -1)
    with torch.no_grad():
        flow1 = flow_from_transition(first.detach().float(), h, w, "weighted_argmax", coarse_window)
        flow2 = flow_from_transition(second.detach().float(), h, w, "weighted_argmax", coarse_window)
        middle = grid + coarse_flow_at(flow1, grid)  # p's coarse match in f2
        back = middle + coarse_flow_at(flow2, middle)  # and where the coarse walk returns
        labels = fine_labels(affine_b2f, grid, image_size)
        on_map = (labels >= 0).all(-1) & (labels[..., 0] <= w2 - 1) & (labels[..., 1] <= h2 - 1)
        counted = on_map & ((back - labels).abs().amax(-1) <= radius)
        rows = [spread_rows(counted[i], max_rows) for i in range(b)]

    walks, pixel_walks = [], []
    for i, picked in enumerate(rows):
        if not picked.numel():
            continue
        queries = f1.half[i].flatten(1).t()[picked]  # (R, C)
        walk = local_walk(
            queries,
            f2.half[i : i + 1],
            f3.half[i : i + 1],
            middle[i, picked],
            labels[i, picked],
            radius,
            temperature,
        )
        walks.append(walk)
        if f1.full is not None:
            # full-resolution pixel 2p, around where the 1/2-resolution first hop went (x2)
            full_w = f1.full.shape[-1]
            pixel_index = (2 * grid[0, picked, 1] * full_w + 2 * grid[0, picked, 0]).long()
            pixel_queries = f1.full[i].flatten(1).t()[pixel_index]
            pixel_walks.append(
                local_walk(
                    pixel_queries,
                    f2.full[i : i + 1],
                    f3.full[i : i + 1],
                    2 * walk.middle,
                    2 * labels[i, picked],
                    pixel_radius,
                    temperature,
                )
            )
    fraction = counted.float().mean()
    if not walks:  # no coarse walk came home (an untrained model): nothing to learn from yet
        zero = sum(m.sum() for m in f1 if m is not None) * 0.0
        out = {"loss": zero, "accuracy": zero.detach(), "error": zero.detach(), "rows": fraction}
        if f1.full is not None:
            out.update({"pixel_loss": zero.detach(), "pixel_error": zero.detach()})
        return out
    loss = torch.cat([walk.nll for walk in walks]).mean()
    with torch.no_grad():
        out = {
            "accuracy": 100.0 * torch.cat([walk.home for walk in walks]).float().mean(),
            "error": torch.cat([walk.error for walk in walks]).mean(),
            "rows": fraction,
        }
    if pixel_walks:
        pixel_loss = torch.cat([walk.nll for walk in pixel_walks]).mean()
        out["pixel_loss"] = pixel_loss.detach()
        out["pixel_error"] = torch.cat([walk.error for walk in pixel_walks]).mean()
        loss = loss + pixel_loss
    out["loss"] = loss
    return out
