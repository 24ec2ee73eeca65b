"""``gmrw.track``: TAP-Vid style point tracking with a GMRW model."""

from __future__ import annotations

import torch

from gmrw.tracking.core import chained_tracks, direct_tracks
from gmrw.tracking.flows import ModelPairFlows
from gmrw.tracking.options import TrackingOptions, resolve_options

__all__ = [
    "ModelPairFlows",
    "check_queries",
    "check_video",
    "count_pairs",
    "run_tracking",
    "track",
]


def check_video(video: torch.Tensor) -> None:
    """ValueError unless ``video`` is (B, T, H, W, 3) with T >= 2."""
    if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[-1] != 3:
        shape = tuple(video.shape) if hasattr(video, "shape") else type(video).__name__
        raise ValueError(f"video must be a tensor of shape (B, T, H, W, 3), got {shape}")
    if video.shape[1] < 2:
        raise ValueError(f"video has {video.shape[1]} frame(s); tracking needs at least 2")


def check_queries(queries: torch.Tensor, num_frames: int, height: int, width: int, batch: int) -> None:
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


def run_tracking(
    model: torch.nn.Module,
    video,
    queries: torch.Tensor,
    options: TrackingOptions,
    pair_batch_size: int = 8,
    cache_flows: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one tracking loop behind :func:`track`, :func:`~gmrw.tracking.track_source` and
    :class:`~gmrw.Predictor`, for checked inputs.

    Args:
        video: (B, T, H, W, 3) tensor in [0, 255] or a :class:`~gmrw.tracking.FrameSource` (B = 1).
        queries: (B, N, 3) (t, y, x) pixels of those frames.
        options: resolved options (:func:`~gmrw.tracking.resolve_options`).

    Returns:
        tracks (B, N, T, 2) (x, y) pixels float32 and visible (B, N, T) bool, on ``queries``' device.
    """
    b, t, h, w = (int(v) for v in video.shape[:4])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = count_pairs(options.mode, queries, t, options.round_trip is not None)
        if options.mode == "chained" and not cache_flows and queries.shape[1]:
            frames = torch.round(queries[..., 0]).long()
            total += 2 * b * max(0, int(frames.max()) - int(frames.min()))  # steps both sweeps compute
        bar = tqdm(total=total, desc=f"gmrw {options.mode} tracking", unit="pair")
    flows = ModelPairFlows(
        model,
        video,
        method=options.method,
        window=options.window,
        pair_batch_size=pair_batch_size,
        progress=bar,
        model_size=options.model_size(h, w),
    )
    try:
        with torch.no_grad():
            if options.mode == "chained":
                steps = max(1, pair_batch_size // (2 * b))
                return chained_tracks(queries, t, (h, w), flows, steps, cache_flows)
            return direct_tracks(queries, t, (h, w), flows, max(1, pair_batch_size), options.round_trip)
    finally:
        if bar is not None:
            bar.close()


def track(
    model: torch.nn.Module,
    video: torch.Tensor,
    queries: torch.Tensor,
    mode: str | None = None,
    upsample_factor: float | None = None,
    method: str | None = None,
    window: float | None = None,
    pair_batch_size: int = 8,
    cache_flows: bool = True,
    progress: bool = False,
    processing_size: int | None = None,
    round_trip: float | None = None,
    options: TrackingOptions | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Track query points through a video with a GMRW model, as the paper's TAP-Vid evaluation.

    Options left as ``None`` (mode, upsample_factor / processing_size, method, window, round_trip) take the
    values the model carries (``model.tracking_defaults``, recorded in our checkpoints: how that
    model tracks best), else the library defaults (chained, ×1, weighted_sum); see
    :mod:`gmrw.tracking.options`.

    Args:
        model: a :class:`gmrw.models.GMRW` (anything with ``flow``); run under ``no_grad``, its
            train/eval mode is left as it is.
        video: (B, T, H, W, 3) uint8 or float in [0, 255].
        queries: (B, N, 3) (t, y, x) pixels, t integer-valued; never modified.
        mode: ``"chained"`` (consecutive-frame flows forward and backward from the query frame,
            occluded where forward-backward consistency fails by ≥ 3 px or the point leaves the
            frame; visible at its query frame) or ``"direct"`` (flow from the query frame straight
            to every frame; occluded only when outside the frame).
        upsample_factor: the frames are upsampled by this factor (bilinear, aligned corners)
            before the model; flows are resized back, so tracks stay in input pixels.
        processing_size: instead of ``upsample_factor``, the short side (px) of the frames the
            model sees (each side rounded to a multiple of 8).
        round_trip: direct mode: also occluded where the flow back to the query frame misses the
            query by this many input px (the reverse flows share the forward ones' computation).
        method / window: the flow read-out (``"weighted_sum"``, ``"argmax"``,
            ``"weighted_argmax"`` with ``window`` in feature cells).
        pair_batch_size: frame pairs per model call (memory vs. speed).
        cache_flows: chained mode keeps the flows both sweeps need instead of recomputing them
            (turn off for very long videos with late query frames to bound memory).
        progress: show a tqdm bar over frame pairs.
        options: instead of the option arguments above (which must then be left ``None``),
            options already resolved once (:func:`~gmrw.tracking.resolve_options`), e.g. for every
            video of a benchmark.

    Returns:
        tracks (B, N, T, 2) (x, y) pixels float32 and occluded (B, N, T) bool, on ``queries``'
        device.
    """
    given = {
        "mode": mode,
        "method": method,
        "window": window,
        "upsample_factor": upsample_factor,
        "processing_size": processing_size,
        "round_trip": round_trip,
    }
    if options is None:
        options = resolve_options(model, **given)
    elif any(value is not None for value in given.values()):
        named = sorted(k for k, v in given.items() if v is not None)
        raise TypeError(f"give either resolved options or the option arguments {named}, not both")
    check_video(video)
    b, t, h, w, _ = video.shape
    check_queries(queries, t, h, w, b)
    tracks, visible = run_tracking(
        model, video, queries.detach(), options, pair_batch_size, cache_flows, progress
    )
    return tracks, ~visible


def grid_queries(grid_size: int, height: int, width: int, frame: int = 0) -> torch.Tensor:
    """``grid_size``² queries (N, 3) (t, y, x) on a regular grid at ``frame``, cell-centred."""
    if grid_size < 1:
        raise ValueError(f"grid size must be >= 1, got {grid_size}")
    ys = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * height / grid_size
    xs = (torch.arange(grid_size, dtype=torch.float32) + 0.5) * width / grid_size
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((torch.full_like(yy, float(frame)), yy, xx), dim=-1).reshape(-1, 3)


def count_pairs(mode: str, queries: torch.Tensor, num_frames: int, round_trip: bool = False) -> int:
    """Flows ``track`` reads from the model (with ``cache_flows``): for progress bars and tests.
    Direct mode with ``round_trip`` reads each pair's reverse flow too."""
    if mode == "chained":
        return 2 * queries.shape[0] * (num_frames - 1) if queries.shape[1] else 0
    frames = torch.round(queries[..., 0]).long()
    pairs = sum(len(torch.unique(f)) * (num_frames - 1) for f in frames if f.numel())
    return 2 * pairs if round_trip else pairs
