"""What the tracker accepts from a caller, checked: video arrays, single frames, query points, and
the query grids of dense tracking. Each problem is a ValueError that says what is wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def check_video_array(video: Any) -> torch.Tensor:
    """A (T, H, W, 3) uint8 or float [0, 255] array/tensor as a CPU tensor, or a ValueError saying
    what is wrong with it."""
    if not isinstance(video, np.ndarray | torch.Tensor):
        raise ValueError(
            f"video must be a path or a (T, H, W, 3) uint8 array or tensor, got {type(video).__name__}"
        )
    shape = tuple(video.shape)
    if len(shape) != 4 or shape[-1] != 3:
        hint = " (channels go last)" if len(shape) == 4 and shape[1] == 3 else ""
        raise ValueError(f"video must have shape (T, H, W, 3){hint}, got {shape}")
    tensor = torch.as_tensor(video).detach().cpu()
    if tensor.dtype != torch.uint8 and not tensor.dtype.is_floating_point:
        raise ValueError(f"video must be uint8 (or float in [0, 255]), got dtype {tensor.dtype}")
    if shape[0] == 0:
        raise ValueError("video has no frames")
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"video frames are empty ({shape[2]}x{shape[1]} pixels)")
    if tensor.dtype.is_floating_point:
        if not torch.isfinite(tensor).all():
            raise ValueError("video contains NaN or infinite values")
        low, high = float(tensor.min()), float(tensor.max())
        if low < 0 or high > 255:
            raise ValueError(f"float video values must lie in [0, 255], got {low:g}..{high:g}")
    return tensor


def check_frame(frame: Any) -> torch.Tensor:
    """One (H, W, 3) uint8 or float [0, 255] frame (array or tensor) as a CPU tensor."""
    if not isinstance(frame, np.ndarray | torch.Tensor):
        raise ValueError(f"a frame must be an (H, W, 3) uint8 array or tensor, got {type(frame).__name__}")
    if frame.ndim != 3:
        raise ValueError(f"a frame must have shape (H, W, 3), got {tuple(frame.shape)}")
    return check_video_array(frame[None])[0]


def as_points(points: Any) -> torch.Tensor:
    """Rows of numbers (a list, array or tensor) as a float32 CPU tensor."""
    if isinstance(points, torch.Tensor):
        return points.detach().cpu().float()
    try:
        return torch.from_numpy(np.asarray(points, dtype=np.float64)).float()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"query points must be numbers: {exc}") from None


def dense_queries(
    height: int, width: int, stride: int, frame: int = 0, mask: np.ndarray | None = None
) -> torch.Tensor:
    """Every ``stride``-th pixel (x = 0, s, 2s, … and likewise y) of a ``height`` × ``width``
    frame, as (N, 3) (t, y, x) queries at ``frame``, row by row: N = ceil(H/s) · ceil(W/s), or the
    points where ``mask`` (H, W) is nonzero."""
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"dense stride must be a positive integer, got {stride!r}")
    ys = torch.arange(0, height, int(stride), dtype=torch.float32)
    xs = torch.arange(0, width, int(stride), dtype=torch.float32)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack((torch.full_like(yy, float(frame)), yy, xx), dim=-1).reshape(-1, 3)
    return points if mask is None else keep_inside_mask(points, mask)


def keep_inside_mask(points: torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 3) (t, y, x) points whose nearest pixel is nonzero in ``mask`` (H, W)."""
    mask = torch.as_tensor(np.asarray(mask)).bool()
    rows = points[:, 1].round().long().clamp(0, mask.shape[0] - 1)
    cols = points[:, 2].round().long().clamp(0, mask.shape[1] - 1)
    return points[mask[rows, cols]]
