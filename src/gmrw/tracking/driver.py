"""``gmrw.track``: the one driver of the tracking loop, behind the Python API, :class:`gmrw.Predictor`,
``gmrw-track``, ``gmrw-demo`` and ``gmrw-eval``.

It checks the inputs, resolves the options (explicit, else the model's, else the library's), and runs
a tracking mode (:mod:`gmrw.tracking.modes`) over a model's flows at points
(:class:`~gmrw.tracking.flows.ModelFlows`). What it keeps between model calls follows one rule:
chained mode's steps that both sweeps need and direct mode's query-frame encodings are kept while
they fit in ``cache_bytes``; beyond that they are computed again.
"""

from __future__ import annotations

import torch

from gmrw.tracking.flows import ModelFlows, model_device
from gmrw.tracking.inputs import check_queries, check_video
from gmrw.tracking.modes import chained_tracks, count_pairs, direct_tracks, query_frames
from gmrw.tracking.options import TrackingOptions, resolve_options
from gmrw.tracking.precision import compute_dtype

#: Bytes the tracker may keep between model calls (see the module docstring).
CACHE_BYTES = 512 * 2**20


def track(
    model: torch.nn.Module,
    video,
    queries: torch.Tensor,
    mode: str | None = None,
    upsample_factor: float | None = None,
    method: str | None = None,
    window: float | None = None,
    pair_batch_size: int = 8,
    progress: bool = False,
    processing_size: int | None = None,
    round_trip: float | None = None,
    chained_candidate: bool | None = None,
    fine_size: int | None = None,
    round_trip_correction: bool | None = None,
    cache_bytes: int = CACHE_BYTES,
    options: TrackingOptions | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Track query points through a video with a GMRW model, as the paper's TAP-Vid evaluation.

    Options left as ``None`` (mode, upsample_factor / processing_size, method, window, round_trip,
    chained_candidate, fine_size, round_trip_correction)
    take the values the model carries (``model.tracking_defaults``, recorded in our checkpoints:
    how that model tracks best), else the library defaults (chained, ×1, weighted_sum); see
    :mod:`gmrw.tracking.options`. Coordinates: ``docs/conventions.md``.

    Args:
        model: a :class:`gmrw.models.GMRW` (or anything with ``flow(src, dst, method=, window=,
            size=)``); run under ``no_grad``, its train/eval mode is left as it is.
        video: (B, T, H, W, 3) uint8 or float in [0, 255], or a
            :class:`~gmrw.tracking.frames.FrameSource` (B = 1, frames read as pairs need them).
        queries: (B, N, 3) (t, y, x) pixels, t integer-valued; never modified.
        mode: ``"chained"`` (consecutive-frame flows forward and backward from the query frame,
            occluded where forward-backward consistency fails by ≥ 3 px or the point leaves the
            frame; visible at its query frame) or ``"direct"`` (flow from the query frame straight
            to every frame; occluded only when outside the frame).
        upsample_factor: the model sees the frames scaled by this (bilinear, aligned corners).
        processing_size: instead of ``upsample_factor``, the short side (px) of the frames the
            model sees (0: the video's own size).
        round_trip: direct mode: also occluded where the flow back to the query frame misses the
            query by this many input px (the reverse flows come from the same pairs).
        chained_candidate: direct mode: also move each point on from its previous frame (one
            more pair a frame) and keep whichever of the two candidates comes back closer to the
            query; with ``round_trip``, also visible where they agree
            (:func:`~gmrw.tracking.modes.direct_tracks_with_chained_candidate`).
        round_trip_correction: direct mode with ``round_trip``: move each match back by half of
            its round trip's miss where the round trip passes
            (:func:`~gmrw.tracking.modes.corrected_by_round_trip`).
        fine_size: with a model that has the fine-match step, the short side (px) of the frames
            its maps are computed from (0: the video's own size, its short side at most twice the
            global match's; None: those of the global match).
        method / window: the flow read-out (``"weighted_sum"``, ``"argmax"``,
            ``"weighted_argmax"`` with ``window`` in feature cells).
        pair_batch_size: frame pairs per model call (memory vs. speed).
        progress: show a tqdm bar over frame pairs.
        cache_bytes: what may be kept between model calls (0: nothing; see the module docstring).
        options: instead of the option arguments above (which must then be left ``None``),
            options already resolved (:func:`~gmrw.tracking.resolve_options`), e.g. once for every
            video of a benchmark, or a :class:`gmrw.Predictor`'s.
        precision: ``"fp32"``; ``"bf16"``: the encoder and transformer under bfloat16 autocast,
            the matching, read-outs and sub-cell step in float32 (2-3x faster on a CPU with AMX,
            far slower on one without); ``"auto"``: bf16 where its matmuls are fast
            (:mod:`gmrw.tracking.precision`).

    Returns:
        tracks (B, N, T, 2) (x, y) pixels float32 and occluded (B, N, T) bool, on ``queries``'
        device. Each track passes through its query exactly: flows are read at the points' own
        positions in the video's pixels, never at resampled ones.
    """
    given = {
        "mode": mode,
        "method": method,
        "window": window,
        "upsample_factor": upsample_factor,
        "processing_size": processing_size,
        "round_trip": round_trip,
        "chained_candidate": chained_candidate,
        "fine_size": fine_size,
        "round_trip_correction": round_trip_correction,
    }
    if options is None:
        options = resolve_options(model, **given)
    elif any(value is not None for value in given.values()):
        named = sorted(k for k, v in given.items() if v is not None)
        raise TypeError(f"give either resolved options or the option arguments {named}, not both")
    if isinstance(pair_batch_size, bool) or not isinstance(pair_batch_size, int) or pair_batch_size < 1:
        raise ValueError(f"pair_batch_size must be a positive integer, got {pair_batch_size!r}")
    check_video(video)
    b, t, h, w = (int(v) for v in video.shape[:4])
    check_queries(queries, t, h, w, b)
    queries = queries.detach()
    # where the model computes, as ModelFlows decides it (a model without parameters: the video's device)
    dtype = compute_dtype(precision, model_device(model, getattr(video, "device", "cpu")))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=count_pairs(options.mode, queries, t, options.chained_candidate),
            desc=f"gmrw {options.mode} tracking",
            unit="pair",
        )
    flows = ModelFlows(
        model,
        video,
        options.model_size(h, w),
        options.method,
        options.window,
        pair_batch_size,
        bar,
        options.fine_model_size(h, w),
        dtype,
    )
    try:
        with torch.no_grad():
            if options.mode == "chained":
                steps = max(1, pair_batch_size // b)
                tracks, visible = chained_tracks(queries, t, (h, w), flows, steps, cache_bytes)
            else:
                frames = query_frames(queries)
                flows.keep({(i, int(s)) for i in range(b) for s in frames[i].tolist()}, cache_bytes)
                tracks, visible = direct_tracks(
                    queries,
                    t,
                    (h, w),
                    flows,
                    pair_batch_size,
                    options.round_trip,
                    options.chained_candidate,
                    options.round_trip_correction,
                )
    finally:
        if bar is not None:
            bar.close()
    return tracks, ~visible
