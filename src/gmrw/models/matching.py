"""Global matching: transition matrices and flows from two refined feature maps.

A transition row ``i`` is a softmax over all target cells of ``<f_src[i], f_dst[j]> / T``
(T = sqrt(C) by default). Flows are expectations (or argmaxes) of target positions under
those rows, minus the source position, in feature cells; :func:`resize_flow` maps them to
pixels of any output size the way the paper's code does (bilinear, corner-aligned, then
multiplied by the size ratio).

Everything that only needs flows works on row chunks (or fused attention), so memory stays
O(N·C) or O(chunk·N) rather than O(N²) for N = h*w cells.
"""

from __future__ import annotations

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


def _flow_rows(probs: torch.Tensor, coords: torch.Tensor, method: str, window) -> torch.Tensor:
    """probs (B, n, N) for n source rows → expected/argmax target positions (B, n, 2)."""
    if method == "weighted_sum":
        return probs @ coords
    if method == "argmax":
        return coords[probs.argmax(dim=-1)]
    return window_around_argmax(probs, coords, window) @ coords  # weighted_argmax


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
            [_flow_rows(probs[:, i : i + rows], coords, method, window) for i in range(0, n, rows)],
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
            parts.append(_flow_rows(probs, coords, method, window))
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
