"""Pixel coordinates between a video's own frames (H0, W0) and the resized frames the tracker works
on (H, W). Pixel centres sit at integers, (0, 0) being the middle of the top-left pixel, and a
bilinear resize with half-pixel centres (:func:`gmrw.video.resize_frames`) maps
``(p + 0.5) · scale - 0.5`` onto ``p``'s content.
"""

from __future__ import annotations

import torch


def _scale(original: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(x, y) scale factors from the original frames to ``size``, float64."""
    return torch.tensor([size[1] / original[1], size[0] / original[0]], dtype=torch.float64)


def queries_to_frames(
    queries: torch.Tensor, original: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """(N, 3) (t, y, x) pixels of the original video → (N, 3) float32 (t, y, x) pixels of frames
    resized to ``size``, clamped into the frame (a point on the original's far edge stays inside)."""
    q = torch.as_tensor(queries, dtype=torch.float64)
    sx, sy = _scale(original, size).tolist()
    x = ((q[:, 2] + 0.5) * sx - 0.5).clamp(0, size[1])
    y = ((q[:, 1] + 0.5) * sy - 0.5).clamp(0, size[0])
    return torch.stack((q[:, 0].round(), y, x), dim=-1).float()


def positions_to_video(xy: torch.Tensor, original: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(..., 2) (x, y) pixels of frames resized to ``size`` → float32 pixels of the original video."""
    scale = _scale(original, size).to(xy.device)
    return ((xy.double() + 0.5) / scale - 0.5).float()
