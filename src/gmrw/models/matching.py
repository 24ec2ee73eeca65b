"""Global matching: transition matrices and flows from two refined feature maps.

A transition row ``i`` is a softmax over all target cells of ``<f_src[i], f_dst[j]> / T``
(T = sqrt(C) by default). Flows are expectations (or argmaxes) of target positions under
those rows, minus the source position, in feature cells; :func:`resize_flow` maps them to
pixels of any output size the way the paper's code does (bilinear, corner-aligned, then
multiplied by the size ratio).

Everything that only needs flows works on row chunks (or fused attention), so memory stays
O(N·C) or O(chunk·N) rather than O(N²) for N = h*w cells; :func:`flow_at_points` computes only
the rows of the cells a set of points reads (tracking needs flows at its points, nowhere else).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gmrw.choices import check_flow_method

CHUNK_ELEMENTS = 1 << 24  # score entries per chunk (64 MiB in float32)


def cell_coords(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h*w, 2) cell positions (x, y), row-major, in feature cells."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack((xs.flatten(), ys.flatten()), dim=-1).to(dtype)


def _scale(channels: int, temperature: float | None) -> float:
    """1 / T: the softmax temperature is sqrt(C) unless configured (None or 0 → default)."""
    return 1.0 / (temperature if temperature else channels**0.5)


def _tokens(feature: torch.Tensor) -> torch.Tensor:
    return feature.flatten(2).transpose(1, 2)  # (B,C,h,w) → (B,h*w,C)


def window_around_argmax(probs: torch.Tensor, coords: torch.Tensor, radius: float) -> torch.Tensor:
    """Renormalise rows of ``probs`` (..., N) to the cells strictly within ``radius`` of each row's
    argmax (``coords`` (N,2)); a row whose kept mass is 0 is divided by 1e-12 instead."""
    peak = coords[probs.argmax(dim=-1)]  # (..., 2)
    dist2 = (peak.unsqueeze(-2) - coords).square().sum(-1)  # (..., N)
    kept = probs * (dist2 < radius**2)
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)


def transition_from_features(
    feature_src: torch.Tensor,
    feature_dst: torch.Tensor,
    temperature: float | None = None,
    window: float | None = None,
) -> torch.Tensor:
    """(B,C,h,w) x2 → (B, h*w, h*w) float32 row-stochastic transition matrix.

    The score matmul runs in the autocast dtype when autocast is on; the softmax is always
    float32. ``window`` (radius in cells) keeps only cells near each row's argmax, as the
    paper's "weighted_argmax" training setting does.
    """
    b, c, h, w = feature_src.shape
    # Scaling the (N, C) queries rather than the (N, N) scores saves an N x N temporary and its
    # gradient; the scores differ from the paper's (q·k)/T in the last bit only.
    scores = torch.bmm(_tokens(feature_src) * _scale(c, temperature), feature_dst.flatten(2))
    probs = F.softmax(scores.float(), dim=-1)
    if window is not None:
        probs = window_around_argmax(probs, cell_coords(h, w, probs.device), window)
    return probs


def windowed_expectation(probs: torch.Tensor, width: int, radius: float) -> torch.Tensor:
    """Rows ``probs`` (..., N) over a grid ``width`` cells wide (row-major) → (..., 2) the expected
    position (x, y) over the cells strictly within ``radius`` of each row's argmax, renormalised
    (0 where that mass is 0): ``window_around_argmax(probs, coords, radius) @ coords`` without its
    (..., N) and (..., N, 2) temporaries — the window's few cells are gathered instead."""
    height = probs.shape[-1] // width
    reach = max(int(math.ceil(radius)), 0)
    span = torch.arange(-reach, reach + 1, device=probs.device)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    near = (dx.square() + dy.square()).float() < radius**2  # the window is strict, as above
    dx, dy = dx[near], dy[near]  # (K,)
    peak = probs.argmax(dim=-1, keepdim=True)  # (..., 1)
    x, y = peak % width + dx, peak // width + dy  # (..., K)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    kept = probs.gather(-1, y.clamp(0, height - 1) * width + x.clamp(0, width - 1)) * inside
    position = torch.stack((x, y), dim=-1).to(probs.dtype)  # (..., K, 2)
    mass = kept.sum(-1, keepdim=True).clamp_min(1e-12)
    return (kept.unsqueeze(-1) * position).sum(-2) / mass


def _flow_rows(probs: torch.Tensor, coords: torch.Tensor, width: int, method: str, window) -> torch.Tensor:
    """probs (B, n, N) for n source rows of a grid ``width`` cells wide → expected/argmax target
    positions (B, n, 2)."""
    if method == "weighted_sum":
        return probs @ coords
    if method == "argmax":
        return coords[probs.argmax(dim=-1)]
    return windowed_expectation(probs, width, window)  # weighted_argmax


def flow_from_transition(
    probs: torch.Tensor, h: int, w: int, method: str = "weighted_sum", window=None
) -> torch.Tensor:
    """(B, h*w, h*w) transition → (B, 2, h, w) flow in feature cells.

    Differentiable for "weighted_sum" (used by the smoothness loss); the other methods go
    through argmax and are computed in row chunks to bound temporaries.
    """
    check_flow_method(method, window)
    b, n, _ = probs.shape
    coords = cell_coords(h, w, probs.device, probs.dtype)
    if method == "weighted_sum":
        target = probs @ coords
    else:
        rows = max(1, CHUNK_ELEMENTS // (b * n))
        target = torch.cat(
            [_flow_rows(probs[:, i : i + rows], coords, w, method, window) for i in range(0, n, rows)],
            dim=1,
        )
    return flow_from_targets(target, h, w)


def flow_from_targets(target: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Target cells (B, h*w, 2) (x, y) of each source cell (row-major) → (B, 2, h, w) flow in cells."""
    coords = cell_coords(h, w, target.device, target.dtype)
    return (target - coords).transpose(1, 2).reshape(target.shape[0], 2, h, w)


def flow_from_features(
    feature_src: torch.Tensor,
    feature_dst: torch.Tensor,
    method: str = "weighted_sum",
    window: float | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """(B,C,h,w) x2 → (B,2,h,w) flow in feature cells without storing the N x N matrix.

    weighted_sum is attention with the cell coordinates as values (fused kernel, O(N·C)
    memory); the argmax methods build score rows in chunks of about 16M entries.
    """
    check_flow_method(method, window)
    b, c, h, w = feature_src.shape
    n = h * w
    scale = _scale(c, temperature)
    q, k = _tokens(feature_src), _tokens(feature_dst)
    coords = cell_coords(h, w, q.device)
    if method == "weighted_sum":
        # The fused kernels take only 4-D inputs with equal head sizes (anything else falls back
        # to the math path, which builds the N x N matrix), so the (x, y) values are zero-padded
        # to C channels: twice the attention FLOPs, still faster on the CPU than row chunks of
        # explicit softmax (measured 1.6 s vs 3.3 s at 16,384 cells). float32 so the expectation
        # is as exact as the reference's softmax-then-sum.
        values = F.pad(coords, (0, c - 2)).expand(b, 1, n, c)
        target = F.scaled_dot_product_attention(q.float()[:, None], k.float()[:, None], values, scale=scale)[
            :, 0, :, :2
        ]
    else:
        rows = max(1, CHUNK_ELEMENTS // (b * n))
        q, kt = q * scale, k.transpose(1, 2)  # scaled as in transition_from_features
        parts = []
        for i in range(0, n, rows):
            probs = F.softmax(torch.bmm(q[:, i : i + rows], kt).float(), dim=-1)
            parts.append(_flow_rows(probs, coords, w, method, window))
        target = torch.cat(parts, dim=1)
    return (target - coords).transpose(1, 2).reshape(b, 2, h, w)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,2,h,w) flow in cells → (B,2,H,W) in pixels of ``size``: bilinear with aligned
    corners, then x scaled by W/w and y by H/h (the paper's convention, kept for parity)."""
    h, w = flow.shape[-2:]
    height, width = size
    if (height, width) == (h, w):
        return flow
    flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=True)
    ratio = torch.tensor([width / w, height / h], device=flow.device, dtype=flow.dtype)
    return flow * ratio.view(1, 2, 1, 1)


def _aligned_cells(
    pixel: torch.Tensor, pixels: int, cells: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer pixel indices of an axis of ``pixels`` px, upsampled from ``cells`` cells with aligned
    corners (as :func:`resize_flow`) → the two cells each pixel reads and the second one's weight."""
    scale = torch.tensor(max(cells - 1, 0), dtype=torch.float32) / max(pixels - 1, 1)
    source = pixel.float() * scale.to(pixel.device)
    first = source.floor().long().clamp(0, cells - 1)
    second = (first + 1).clamp(max=cells - 1)
    return first, second, (source - first).clamp(0, 1)


def _point_stencil(xy: torch.Tensor, size: tuple[int, int], cells: tuple[int, int]):
    """Where :func:`flow_at_points` reads: (K, N, 2) (x, y) pixels of frames of ``size`` → the
    (K, N, 16) cells (row-major) whose flows make up each point's value, and their (K, N, 16) weights.

    The value is the paper's bilinear sampler (four pixel corners; indices clamped to the frame,
    weights from the unclamped corners, so outside points extrapolate) over the flow upsampled to
    ``size`` with aligned corners, whose every pixel is itself a bilinear mix of 2 × 2 cells.
    """
    height, width = size
    h, w = cells
    per_axis = []
    for coord, pixels, count in ((xy[..., 1].float(), height, h), (xy[..., 0].float(), width, w)):
        low = torch.floor(coord)
        corner_weights = torch.stack((low + 1 - coord, coord - low), dim=-1)  # (K, N, 2)
        corners = torch.stack((low, low + 1), dim=-1).long().clamp(0, pixels - 1)
        first, second, frac = _aligned_cells(corners, pixels, count)
        index = torch.stack((first, second), dim=-1)  # (K, N, corner, cell)
        weight = corner_weights.unsqueeze(-1) * torch.stack((1 - frac, frac), dim=-1)
        per_axis.append((index.flatten(-2), weight.flatten(-2)))  # (K, N, 4) each
    (rows, row_weights), (cols, col_weights) = per_axis
    index = rows.unsqueeze(-1) * w + cols.unsqueeze(-2)  # (K, N, 4, 4)
    weight = row_weights.unsqueeze(-1) * col_weights.unsqueeze(-2)
    return index.flatten(-2), weight.flatten(-2)


def flow_at_points(
    feature_src: torch.Tensor,
    feature_dst: torch.Tensor,
    xy: torch.Tensor,
    size: tuple[int, int],
    method: str = "weighted_sum",
    window: float | None = None,
    temperature: float | None = None,
    dense_fraction: float = 0.5,
) -> torch.Tensor:
    """Refined features (K,C,h,w) x2 and points ``xy`` (K, N, 2) (x, y) in pixels of frames of
    ``size`` (H, W) → (K, N, 2) flow (dx, dy) in pixels of that size at those points.

    Equal, to float rounding, to sampling the dense flow the tracker used to build —
    ``sample_flow(resize_flow(flow_from_features(...), size), xy)`` (aligned-corner upsampling,
    then the paper's bilinear sampler) — but only the transition rows of the cells those samples
    touch are computed (at most 16 per point, shared between points): N × h·w scores instead of
    (h·w)². Where the points touch more than ``dense_fraction`` of the cells (dense grids), the
    whole cell flow is computed once (the O(N·C)-memory path of :func:`flow_from_features`) and read.
    """
    check_flow_method(method, window)
    k, c, h, w = feature_src.shape
    n = h * w
    index, weight = _point_stencil(xy, size, (h, w))  # (K, P, 16)
    needed = torch.zeros(n, dtype=torch.bool, device=index.device)
    needed[index.flatten()] = True
    coords = cell_coords(h, w, feature_src.device)
    if int(needed.sum()) > dense_fraction * n:
        cell_flow = flow_from_features(feature_src, feature_dst, method, window, temperature)
        flows, slot = cell_flow.flatten(2).transpose(1, 2), index  # (K, h*w, 2)
    else:
        cells = torch.nonzero(needed).squeeze(1)
        q = _tokens(feature_src)[:, cells] * _scale(c, temperature)  # scaled as transition_from_features
        kt = feature_dst.flatten(2)
        rows = max(1, CHUNK_ELEMENTS // (k * n))
        parts = []
        for i in range(0, len(cells), rows):
            probs = F.softmax(torch.bmm(q[:, i : i + rows], kt).float(), dim=-1)
            parts.append(_flow_rows(probs, coords, w, method, window))
        flows = torch.cat(parts, dim=1) - coords[cells]  # (K, U, 2) in cells
        lookup = torch.zeros(n, dtype=torch.long, device=index.device)
        lookup[cells] = torch.arange(len(cells), device=index.device)
        slot = lookup[index]
    p = index.shape[1]
    values = torch.gather(flows, 1, slot.reshape(k, -1, 1).expand(-1, -1, 2)).reshape(k, p, 16, 2)
    ratio = torch.tensor([size[1] / w, size[0] / h], device=values.device, dtype=values.dtype)
    return (values * weight.unsqueeze(-1)).sum(2) * ratio
