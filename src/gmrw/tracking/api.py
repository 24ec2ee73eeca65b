"""``gmrw.track``: TAP-Vid style point tracking with a GMRW model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gmrw.tracking.core import Pair, chained_tracks, direct_tracks
from gmrw.tracking.options import METHODS, MODES, TrackingOptions, resolve_options

__all__ = ["METHODS", "MODES", "ModelPairFlows", "check_queries", "check_video", "count_pairs", "track"]


class ModelPairFlows:
    """The pair-flow function backed by a model: ``(b, src, dst)`` triples → (K, 2, H, W) flows.

    Frames are converted to float [0, 255], resized to ``model_size`` (H', W') (default: scaled by
    ``upsample_factor``; bilinear, aligned corners, antialiased when shrinking) on the fly, and sent
    to the model ``pair_batch_size`` pairs at a time; flows are resized to the original (H, W) by
    the model, so tracks stay in input pixels.

    With a GMRW (a model with ``encode``, ``refine`` and ``flow_from_features``) each frame of a
    chunk is encoded once however many pairs it is in, and a pair asked for in both directions
    (chained mode's forward and backward flows) is refined once: the feature transformer treats
    its two inputs symmetrically, so ``refine(b, a)`` is ``refine(a, b)`` swapped, and the reverse
    flow is read from the same features. That halves chained mode's cost; any other model goes
    through ``flow(src, dst, ...)`` one pair at a time.

    Args:
        model: anything with ``flow(src, dst, method=, window=, size=)``.
        video: (B, T, H, W, 3) uint8 or float in [0, 255], on any device (or a
            :class:`gmrw.tracking.FrameSource`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        video: torch.Tensor,
        upsample_factor: float = 1,
        method: str = "weighted_sum",
        window: float | None = None,
        pair_batch_size: int = 8,
        progress=None,
        model_size: tuple[int, int] | None = None,
    ):
        self.model = model
        self.video = video
        self.height, self.width = int(video.shape[2]), int(video.shape[3])
        self.model_size = (
            tuple(model_size)
            if model_size is not None
            else (TrackingOptions(upsample_factor=upsample_factor).model_size(self.height, self.width))
        )
        self.method = method
        self.window = window
        self.pair_batch_size = max(1, int(pair_batch_size))
        self.progress = progress
        self.calls = 0  # flows computed so far (tests check nothing is wasted)
        self.shared = all(
            callable(getattr(model, name, None)) for name in ("encode", "refine", "flow_from_features")
        )
        try:
            self.device = next(model.parameters()).device
        except (StopIteration, AttributeError):
            self.device = video.device

    def frames(self, index: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(video, frame) pairs → (K, 3, H', W') float32 on the model's device."""
        bs = torch.tensor([i for i, _ in index])
        ts = torch.tensor([t for _, t in index])
        x = self.video[bs.to(self.video.device), ts.to(self.video.device)]
        x = x.to(self.device).permute(0, 3, 1, 2).float()
        if self.model_size != (self.height, self.width):
            shrink = self.model_size[0] < self.height or self.model_size[1] < self.width
            x = F.interpolate(x, size=self.model_size, mode="bilinear", align_corners=True, antialias=shrink)
        return x

    def __call__(self, pairs: Sequence[Pair]) -> torch.Tensor:
        if not self.shared:
            return self._one_by_one(pairs)
        # Each unordered pair once, oriented as first asked; where it is asked for each request.
        requests: dict[Pair, list[tuple[int, bool]]] = {}
        for position, (b, s, d) in enumerate(pairs):
            if (b, d, s) in requests:
                requests[(b, d, s)].append((position, True))
            else:
                requests.setdefault((b, s, d), []).append((position, False))
        out: list[torch.Tensor | None] = [None] * len(pairs)
        keys = list(requests)
        size = (self.height, self.width)
        for i in range(0, len(keys), self.pair_batch_size):
            chunk = keys[i : i + self.pair_batch_size]
            frames = list(dict.fromkeys([(b, s) for b, s, _ in chunk] + [(b, d) for b, _, d in chunk]))
            slot = {frame: k for k, frame in enumerate(frames)}
            encoded = self.model.encode(self.frames(frames))
            refined_src, refined_dst = self.model.refine(
                encoded[[slot[(b, s)] for b, s, _ in chunk]], encoded[[slot[(b, d)] for b, _, d in chunk]]
            )
            produced = 0
            for reverse in (False, True):
                rows = [k for k, key in enumerate(chunk) if any(r == reverse for _, r in requests[key])]
                if not rows:
                    continue
                src, dst = (refined_dst, refined_src) if reverse else (refined_src, refined_dst)
                flows = self.model.flow_from_features(
                    src[rows], dst[rows], self.method, self.window, size
                ).float()
                for flow, k in zip(flows, rows):
                    for position, r in requests[chunk[k]]:
                        if r == reverse:
                            out[position] = flow
                produced += len(rows)
            self.calls += produced
            if self.progress is not None:
                self.progress.update(produced)
        return torch.stack(out) if out else torch.zeros(0, 2, *size, device=self.device)

    def _one_by_one(self, pairs: Sequence[Pair]) -> torch.Tensor:
        out = []
        for i in range(0, len(pairs), self.pair_batch_size):
            chunk = pairs[i : i + self.pair_batch_size]
            src = self.frames([(b, s) for b, s, _ in chunk])
            dst = self.frames([(b, d) for b, _, d in chunk])
            flow = self.model.flow(
                src, dst, method=self.method, window=self.window, size=(self.height, self.width)
            )
            out.append(flow.float())
            self.calls += len(chunk)
            if self.progress is not None:
                self.progress.update(len(chunk))
        return torch.cat(out)


def check_video(video: torch.Tensor) -> None:
    """ValueError unless ``video`` is (B, T, H, W, 3) with T >= 2."""
    if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[-1] != 3:
        shape = tuple(video.shape) if hasattr(video, "shape") else type(video).__name__
        raise ValueError(f"video must be a tensor of shape (B, T, H, W, 3), got {shape}")
    if video.shape[1] < 2:
        raise ValueError(f"video has {video.shape[1]} frame(s); tracking needs at least 2")


def check_queries(queries: torch.Tensor, num_frames: int, height: int, width: int, batch: int) -> None:
    """ValueError for queries not (B, N, 3), with a non-integer or out-of-range frame index, or
    outside the frame (x in [0, W], y in [0, H]; the far edge is allowed because TAP-Vid scales
    coordinates in [0, 1] by the frame size)."""
    if not isinstance(queries, torch.Tensor) or queries.ndim != 3 or queries.shape[-1] != 3:
        shape = tuple(queries.shape) if hasattr(queries, "shape") else type(queries).__name__
        raise ValueError(f"queries must be a tensor of shape (B, N, 3) as (t, y, x), got {shape}")
    if queries.shape[0] != batch:
        raise ValueError(f"queries are for {queries.shape[0]} videos but the batch has {batch}")
    if queries.numel() == 0:
        return
    q = queries.detach().float()
    if not torch.isfinite(q).all():
        raise ValueError("queries contain NaN or infinite values")
    t, y, x = q[..., 0], q[..., 1], q[..., 2]
    if (t - t.round()).abs().max() > 1e-4:
        raise ValueError("query frame indices t must be integers")
    bad = (t.round() < 0) | (t.round() > num_frames - 1)
    if bad.any():
        first = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(
            f"query {first} is at frame {float(t[first]):g}, outside the video's frames 0..{num_frames - 1}"
        )
    bad = (x < 0) | (x > width) | (y < 0) | (y > height)
    if bad.any():
        first = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(
            f"query {first} at (x={float(x[first]):g}, y={float(y[first]):g}) is outside the "
            f"{width}x{height} frame"
        )


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

    Returns:
        tracks (B, N, T, 2) (x, y) pixels float32 and occluded (B, N, T) bool, on ``queries``'
        device.
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
    check_video(video)
    b, t, h, w, _ = video.shape
    check_queries(queries, t, h, w, b)
    queries = queries.detach()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=count_pairs(options.mode, queries, t), desc=f"gmrw {options.mode} tracking", unit="pair"
        )
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
                tracks, visible = chained_tracks(queries, t, (h, w), flows, steps, cache_flows)
            else:
                tracks, visible = direct_tracks(
                    queries, t, (h, w), flows, max(1, pair_batch_size), options.round_trip
                )
    finally:
        if bar is not None:
            bar.close()
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
