"""Tracking a video that is not in memory: frames are fetched on demand from a :class:`FrameSource`.

:func:`track_source` runs the same loop as :func:`gmrw.track` (:func:`~gmrw.tracking.api.run_tracking`)
while reading only the frames of the pairs it is about to compute (chained mode walks consecutive
pairs, so a video of any length needs a handful of frames at a time). Peak memory is then one chunk
of ``pair_batch_size`` pairs at the model's input size, plus the (N, T, 2) tracks, plus, in chained
mode with ``cache_flows``, two (2, H, W) flows per step between the first and last query frames.
"""

from __future__ import annotations

import torch

from gmrw.tracking.api import check_queries, run_tracking
from gmrw.tracking.frames import FrameSource, TensorFrames
from gmrw.tracking.options import resolve_options

__all__ = ["FrameSource", "TensorFrames", "flow_cache_bytes", "track_source"]


def flow_cache_bytes(queries: torch.Tensor, height: int, width: int) -> int:
    """Bytes chained mode keeps with ``cache_flows`` for (N, 3) queries: a forward and a backward
    (2, H, W) float32 flow for every step between the first and the last query frame."""
    if queries.numel() == 0:
        return 0
    frames = torch.round(queries[..., 0])
    steps = int(frames.max() - frames.min())
    return steps * 2 * 2 * height * width * 4


def track_source(
    model: torch.nn.Module,
    source: FrameSource,
    queries: torch.Tensor,
    mode: str | None = None,
    upsample_factor: float | None = None,
    method: str | None = None,
    window: float | None = None,
    pair_batch_size: int = 8,
    cache_flows: bool | None = None,
    flow_cache_limit: int = 512 * 2**20,
    progress: bool = False,
    processing_size: int | None = None,
    round_trip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gmrw.track` for one video read on demand from ``source``.

    Args:
        model: a GMRW (anything with ``flow``); its device is where pairs are computed.
        source: the video, (T, H, W, 3) frames in [0, 255] read as needed.
        queries: (N, 3) (t, y, x) pixels of the source's frames.
        mode, upsample_factor, method, window, pair_batch_size, processing_size, round_trip: as
            :func:`gmrw.track` (``None``: the model's defaults).
        cache_flows: keep the flows both chained sweeps need (``None``: only while that takes at
            most ``flow_cache_limit`` bytes, else recompute them, which bounds memory).
        progress: show a tqdm bar over frame pairs.

    Returns:
        tracks (N, T, 2) (x, y) pixels float32 and occluded (N, T) bool, on the CPU.
    """
    options = resolve_options(
        model,
        mode=mode,
        method=method,
        window=window,
        upsample_factor=upsample_factor,
        processing_size=processing_size,
        round_trip=round_trip,
    )
    t, h, w = source.num_frames, source.height, source.width
    if t < 2:
        raise ValueError(f"video has {t} frame(s); tracking needs at least 2")
    queries = torch.as_tensor(queries, dtype=torch.float32).detach().cpu()
    if queries.ndim != 2 or queries.shape[-1] != 3:
        raise ValueError(f"queries must be (N, 3) as (t, y, x), got {tuple(queries.shape)}")
    batched = queries[None]
    check_queries(batched, t, h, w, 1)
    if cache_flows is None:
        cache_flows = flow_cache_bytes(queries, h, w) <= flow_cache_limit
    tracks, visible = run_tracking(model, source, batched, options, pair_batch_size, cache_flows, progress)
    return tracks[0], ~visible[0]
