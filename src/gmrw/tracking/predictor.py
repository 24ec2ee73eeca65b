"""``gmrw.Predictor``: the one object a Python user holds to track points in a video.

    predictor = gmrw.Predictor("kubric_73k.pth")                 # device="auto": a GPU if there is one
    tracks, occluded = predictor("clip.mp4", grid_size=10)         # or a (T, H, W, 3) uint8 array
    tracks, occluded = predictor(video, queries=[[0, 120.0, 80.0]])   # (t, y, x) rows
    tracks, occluded = predictor(video, dense=4)                   # every 4th pixel of frame 0
    session = predictor.online()                                   # frames one at a time

Everything the caller sees is in the original video's pixels: queries (N, 3) as (t, y, x), tracks
(N, T, 2) as (x, y), pixel centres at integers. Inside, frames are resized so their short side is
the model's processing size (``model.tracking_defaults``, else 256 × ``upsample_factor``), decoded
on demand when the video is a file, tracked pair by pair on the model's device
(:func:`~gmrw.tracking.api.run_tracking`, the loop behind ``gmrw.track``), and the tracks brought
back to the original pixels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gmrw.checkpoint import CheckpointError, choose_checkpoint, load_model
from gmrw.models import compile_network
from gmrw.models import flush_denormals as flush
from gmrw.tracking.api import check_queries, grid_queries, run_tracking
from gmrw.tracking.coords import positions_to_video, queries_to_frames
from gmrw.tracking.frames import FrameSource, ResizedFrames, TensorFrames
from gmrw.tracking.inputs import as_points, check_video_array, dense_queries, keep_inside_mask
from gmrw.tracking.online import OnlineSession
from gmrw.tracking.options import TrackingOptions, resolve_options, scaled_size
from gmrw.tracking.stream import flow_cache_bytes
from gmrw.tracking.video_file import VideoFile

log = logging.getLogger(__name__)

#: Short side frames are brought to when neither the model nor the caller gives a processing size
#: (then × ``upsample_factor``): TAP-Vid's 256.
DEFAULT_SHORT_SIDE = 256


def pick_device(name: str | torch.device) -> torch.device:
    """``"auto"`` (a CUDA GPU if one is visible, else the CPU) or any torch device name."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: no CUDA GPU is visible")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r}: {exc}") from None


def load_tracker(checkpoint: str | os.PathLike | torch.nn.Module | None, device: torch.device):
    """A GMRW on ``device`` from a checkpoint file, a run directory (its newest intact checkpoint),
    an already built model, or ``None`` (random weights, with a warning)."""
    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.to(device).eval()
    if checkpoint is None:
        log.warning("no checkpoint given: the model has random weights and its tracks are meaningless")
        return load_model(None).to(device)
    path = choose_checkpoint(checkpoint, "checkpoint").path
    try:
        return load_model(path).to(device)
    except CheckpointError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from None


class Predictor:
    """Tracks points through a video with a GMRW model; see the module docstring.

    Args:
        checkpoint: the paper's ``.pth``, one of our ``.ckpt`` files or run directories, an
            already built model, or ``None`` (random weights: for trying things out only).
        device: ``"auto"`` (a GPU if one is visible), ``"cpu"``, ``"cuda:1"``, ...
        mode, method, window, upsample_factor, processing_size, round_trip: how to track, as
            :func:`gmrw.track`; ``None`` takes the model's own defaults (our checkpoints record
            how their model tracks best), else the library's. ``processing_size`` is the short
            side of the frames the model sees (0: the video's own size); without one, frames are
            brought to a short side of 256 and then scaled by ``upsample_factor``.
        pair_batch_size: frame pairs per model call (memory vs. speed).
        progress: show a progress bar over frame pairs.
        flush_denormals: on the CPU, turn on flush-denormals (process-wide, as ``gmrw-track``
            does; see :func:`gmrw.flush_denormals`), which makes the model many times faster.
        compile: ``torch.compile`` the model's backbone and transformer, in place (a model you
            pass in is compiled too; :func:`gmrw.models.compile_network`). The first pairs at each
            new frame size or pair count compile first, so it pays off on long videos only.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | torch.nn.Module | None = None,
        device: str | torch.device = "auto",
        *,
        mode: str | None = None,
        method: str | None = None,
        window: float | None = None,
        upsample_factor: float | None = None,
        processing_size: int | None = None,
        round_trip: float | None = None,
        pair_batch_size: int = 8,
        progress: bool = False,
        flush_denormals: bool = True,
        compile: bool = False,
    ):
        if isinstance(pair_batch_size, bool) or not isinstance(pair_batch_size, int) or pair_batch_size < 1:
            raise ValueError(f"pair_batch_size must be a positive integer, got {pair_batch_size!r}")
        self.device = pick_device(device)
        if self.device.type == "cpu" and flush_denormals:
            flush(True)
        self.model = load_tracker(checkpoint, self.device)
        if compile:
            try:
                compile_network(self.model)
            except RuntimeError as exc:  # no C++ compiler: say so as the bad setting it is
                raise ValueError(f"compile=True: {exc}") from None
        self.keep_size = processing_size == 0
        #: The resolved options (explicit, else the model's, else the library's).
        self.options: TrackingOptions = resolve_options(
            self.model,
            mode=mode,
            method=method,
            window=window,
            upsample_factor=(upsample_factor or 1) if self.keep_size else upsample_factor,
            processing_size=None if self.keep_size else processing_size,
            round_trip=round_trip,
        )
        self.pair_batch_size = pair_batch_size
        self.progress = progress

    # ------------------------------------------------------------------------------- frames
    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) the frames of a ``height`` × ``width`` video are resized to before tracking
        (sides multiples of 8); the model then sees them × ``upsample_factor``."""
        short_side = 0 if self.keep_size else self.options.processing_size or DEFAULT_SHORT_SIDE
        return scaled_size(height, width, short_side)

    @property
    def model_options(self) -> TrackingOptions:
        """The options the tracking loop gets for frames already at :meth:`frame_size`: the
        processing size is reached by the resize, so only ``upsample_factor`` is left to apply."""
        if self.options.processing_size is None:
            return self.options
        return replace(self.options, processing_size=None, upsample_factor=1.0)

    def open(self, video: Any) -> FrameSource:
        """The video as a :class:`~gmrw.tracking.FrameSource` serving frames at :meth:`frame_size`:
        a path is decoded on demand, an array is resized a frame at a time (a source of your own is
        used as it is, unless it is a :class:`~gmrw.tracking.frames.ResizedFrames`). ValueError for a video
        that cannot be tracked (no file, not a video, wrong shape or dtype, fewer than 2 frames)."""
        if isinstance(video, FrameSource):
            source = video
        elif isinstance(video, str | os.PathLike):
            source = VideoFile(video, cache_frames=max(32, 4 * self.pair_batch_size))
        else:
            source = TensorFrames(check_video_array(video), cache_frames=max(32, 4 * self.pair_batch_size))
        if source.num_frames < 2:
            raise ValueError(f"video has {source.num_frames} frame(s); tracking needs at least 2")
        if isinstance(source, ResizedFrames):  # any other FrameSource is tracked at the size it serves
            source.resize_to(self.frame_size(*source.original_size))
        return source

    # ------------------------------------------------------------------------------ queries
    def make_queries(
        self,
        source: FrameSource,
        queries: Any = None,
        grid_size: int = 0,
        grid_query_frame: int = 0,
        segm_mask: Any = None,
        dense: int | None = None,
    ) -> torch.Tensor:
        """The (N, 3) (t, y, x) queries of a call, in original pixels, checked against the video:
        the given ``queries``, then a ``grid_size``² grid of cell centres at ``grid_query_frame``
        (kept where ``segm_mask`` is nonzero), or, with ``dense``, every ``dense``-th pixel."""
        num_frames = source.num_frames
        height, width = source.original_size
        if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 0:
            raise ValueError(f"grid_size must be a non-negative integer, got {grid_size!r}")
        wants_grid = bool(grid_size) or dense is not None
        if wants_grid and not 0 <= int(grid_query_frame) < num_frames:
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
                raise ValueError(
                    "dense tracking follows a whole frame: give dense alone, not with queries/grid"
                )
            return dense_queries(height, width, dense, int(grid_query_frame), segm_mask)
        parts = []
        if queries is not None:
            given = as_points(queries)
            if given.ndim != 2 or given.shape[-1] != 3:
                raise ValueError(f"queries must be (N, 3) rows of (t, y, x), got shape {tuple(given.shape)}")
            parts.append(given)
        if grid_size:
            # cell centres, in the pixel-centre convention
            grid = grid_queries(int(grid_size), height, width, int(grid_query_frame)) - torch.tensor(
                [0, 0.5, 0.5]
            )
            parts.append(grid if segm_mask is None else keep_inside_mask(grid, segm_mask))
        if not parts:
            raise ValueError("no query points: give queries (N, 3) as (t, y, x), grid_size or dense")
        points = torch.cat(parts)
        check_queries(points[None], num_frames, height, width, 1)
        return points

    # ----------------------------------------------------------------------------- tracking
    def __call__(
        self,
        video: Any,
        queries: Any = None,
        grid_size: int = 0,
        grid_query_frame: int = 0,
        segm_mask: Any = None,
        dense: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Track points through ``video``.

        Args:
            video: a path (decoded on demand), a (T, H, W, 3) uint8 (or float [0, 255]) array or
                tensor of any size, or a source from :meth:`open`.
            queries: (N, 3) (t, y, x) in the video's pixels, t a frame index.
            grid_size: also track a ``grid_size`` × ``grid_size`` grid of cell centres on frame
                ``grid_query_frame`` (only where ``segm_mask``, (H, W), is nonzero).
            dense: instead, every ``dense``-th pixel of frame ``grid_query_frame`` (x = 0, s, 2s,
                …, rows first: ``tracks.reshape(ceil(H/s), ceil(W/s), T, 2)`` without a mask).

        Returns:
            tracks (N, T, 2) (x, y) float32 and occluded (N, T) bool, in the video's pixels, on
            the CPU.
        """
        source = self.open(video)
        points = self.make_queries(source, queries, grid_size, grid_query_frame, segm_mask, dense)
        size = (source.height, source.width)
        inside = queries_to_frames(points, source.original_size, size)
        cache = flow_cache_bytes(inside, *size) <= 512 * 2**20
        tracks, visible = run_tracking(
            self.model, source, inside[None], self.model_options, self.pair_batch_size, cache, self.progress
        )
        tracks = positions_to_video(tracks[0].cpu(), source.original_size, size)
        # Each track passes through its query exactly, even where the resize moved an edge point in.
        tracks[torch.arange(len(points)), points[:, 0].round().long()] = points[:, [2, 1]]
        return tracks, ~visible[0].cpu()

    def online(self, mode: str | None = None) -> OnlineSession:
        """A session that tracks frames given one at a time (see :class:`OnlineSession`), with this
        predictor's model and options (``mode`` overrides the tracking mode)."""
        options = self.model_options if mode is None else replace(self.model_options, mode=mode)
        return OnlineSession(self.model, options, self.frame_size)
