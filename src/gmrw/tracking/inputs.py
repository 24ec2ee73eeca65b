"""What the tracker accepts from a caller, checked: videos, single frames, query points, and the
query grids (regular, dense, masked) it makes. Each problem is a ValueError that says what is
wrong, in one line. Queries are (t, y, x) in the video's pixels (``docs/conventions.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def check_video(video: Any) -> None:
    """ValueError unless ``video`` is a (B, T, H, W, 3) tensor or a frame source with T >= 2."""
    shape = tuple(video.shape) if hasattr(video, "shape") else type(video).__name__
    if not hasattr(video, "shape") or len(video.shape) != 5 or video.shape[-1] != 3:
        raise ValueError(f"video must be a tensor of shape (B, T, H, W, 3), got {shape}")
    if not isinstance(video, torch.Tensor) and not (hasattr(video, "frames") and video.shape[0] == 1):
        raise ValueError(f"video must be a tensor of shape (B, T, H, W, 3), got {type(video).__name__}")
    if video.shape[1] < 2:
        raise ValueError(f"video has {video.shape[1]} frame(s); tracking needs at least 2")


def check_queries(queries: Any, num_frames: int, height: int, width: int, batch: int) -> None:
    """ValueError naming the first query that is not (B, N, 3), not finite, at a non-integer or
    out-of-range frame index, or outside the frame (x in [0, W], y in [0, H]; the far edge is
    allowed because TAP-Vid scales coordinates in [0, 1] by the frame size)."""
    if not isinstance(queries, torch.Tensor) or queries.ndim != 3 or queries.shape[-1] != 3:
        shape = tuple(queries.shape) if hasattr(queries, "shape") else type(queries).__name__
        raise ValueError(f"queries must be a tensor of shape (B, N, 3) as (t, y, x), got {shape}")
    if queries.shape[0] != batch:
        raise ValueError(f"queries are for {queries.shape[0]} videos but the batch has {batch}")
    if queries.numel() == 0:
        return
    q = queries.detach().double().cpu()
    t, y, x = q[..., 0], q[..., 1], q[..., 2]
    problems = [
        (~torch.isfinite(q).all(-1), "not a finite number"),
        ((t - t.round()).abs() > 1e-4, "the frame index t must be an integer"),
        (
            (t.round() < 0) | (t.round() > num_frames - 1),
            "frame {frame} is out of range, the video has frames 0..{last}",
        ),
        ((x < 0) | (x > width) | (y < 0) | (y > height), f"outside the {width}x{height} frame"),
    ]
    for bad, message in problems:
        if bad.any():
            b, n = torch.nonzero(bad)[0].tolist()
            label = f"query {n}" if batch == 1 else f"query {n} of video {b}"
            values = f"t={float(t[b, n]):g}, y={float(y[b, n]):g}, x={float(x[b, n]):g}"
            detail = message.format(frame=round(float(t[b, n])), last=num_frames - 1)
            raise ValueError(f"{label} ({values}): {detail}")


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


def grid_queries(grid_size: int, height: int, width: int, frame: int = 0) -> torch.Tensor:
    """``grid_size``² queries (N, 3) (t, y, x) at ``frame``: the centres of a regular grid of
    cells over the frame, in the pixel-centre convention (the frame spans -0.5 … W - 0.5)."""
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 1:
        raise ValueError(f"grid size must be a positive integer, got {grid_size!r}")
    ys = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * height / grid_size - 0.5
    xs = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * width / grid_size - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((torch.full_like(yy, float(frame)), yy, xx), dim=-1).reshape(-1, 3)


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


def make_queries(
    num_frames: int,
    size: tuple[int, int],
    queries: Any = None,
    grid_size: int = 0,
    grid_query_frame: int = 0,
    segm_mask: Any = None,
    dense: int | None = None,
) -> torch.Tensor:
    """The (N, 3) (t, y, x) queries a caller asks for on a video of ``num_frames`` frames of
    ``size`` (H, W), checked: the given ``queries``, then a ``grid_size``² grid of cell centres at
    ``grid_query_frame`` (kept where ``segm_mask`` (H, W) is nonzero), or, with ``dense``, every
    ``dense``-th pixel of that frame."""
    height, width = size
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 0:
        raise ValueError(f"grid_size must be a non-negative integer, got {grid_size!r}")
    if (grid_size or dense is not None) and not 0 <= int(grid_query_frame) < num_frames:
        raise ValueError(
            f"grid_query_frame {grid_query_frame} is out of range, the video has frames 0..{num_frames - 1}"
        )
    if segm_mask is not None:
        segm_mask = np.asarray(segm_mask)
        if segm_mask.shape != (height, width):
            raise ValueError(
                f"segm_mask must be (H, W) = ({height}, {width}) like the video, got {segm_mask.shape}"
            )
    if dense is not None:
        if queries is not None or grid_size:
            raise ValueError("dense tracking follows a whole frame: give dense alone, not with queries/grid")
        return dense_queries(height, width, dense, int(grid_query_frame), segm_mask)
    parts = []
    if queries is not None:
        given = as_points(queries)
        if given.ndim != 2 or given.shape[-1] != 3:
            raise ValueError(f"queries must be (N, 3) rows of (t, y, x), got shape {tuple(given.shape)}")
        parts.append(given)
    if grid_size:
        grid = grid_queries(int(grid_size), height, width, int(grid_query_frame))
        parts.append(grid if segm_mask is None else keep_inside_mask(grid, segm_mask))
    if not parts:
        raise ValueError("no query points: give queries (N, 3) as (t, y, x), grid_size or dense")
    points = torch.cat(parts)
    check_queries(points[None], num_frames, height, width, 1)
    return points
