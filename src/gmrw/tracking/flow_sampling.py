"""Reading a flow field at sub-pixel positions, the way the paper's evaluation does it."""

from __future__ import annotations

import torch


def sample_flow(flow: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``flow`` (B, C, H, W) at ``xy`` (B, N, 2) pixel positions (x, y) → (B, N, C).

    Matches the paper's sampler bit for bit: the four corner *indices* are clamped to the image,
    but the weights are computed from the unclamped corners, so a position outside the image is
    extrapolated from the border pixels rather than clamped to them. Positions are in pixel units
    of ``flow`` (pixel centres at integers).
    """
    b, c, h, w = flow.shape
    x = xy[..., 0].float()
    y = xy[..., 1].float()
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    x1 = x0 + 1
    y1 = y0 + 1
    x0i, x1i = x0.long().clamp(0, w - 1), x1.long().clamp(0, w - 1)
    y0i, y1i = y0.long().clamp(0, h - 1), y1.long().clamp(0, h - 1)

    flat = flow.permute(0, 2, 3, 1).reshape(b, h * w, c)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * w + xi).unsqueeze(-1).expand(-1, -1, c)
        return torch.gather(flat, 1, index)

    # Same products and summation order as the reference, so results are bit-identical.
    w00 = ((x1 - x) * (y1 - y)).unsqueeze(-1)
    w01 = ((x - x0) * (y1 - y)).unsqueeze(-1)
    w10 = ((x1 - x) * (y - y0)).unsqueeze(-1)
    w11 = ((x - x0) * (y - y0)).unsqueeze(-1)
    return w00 * gather(y0i, x0i) + w01 * gather(y0i, x1i) + w10 * gather(y1i, x0i) + w11 * gather(y1i, x1i)


def inside(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(…, 2) positions → (…) bool: ``0 <= x < width`` and ``0 <= y < height``."""
    x, y = xy[..., 0], xy[..., 1]
    return (x >= 0) & (y >= 0) & (x < width) & (y < height)
