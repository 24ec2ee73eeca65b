"""``gmrw.Predictor``: the one object a Python user holds to track points in a video.

    predictor = gmrw.Predictor("kubric_73k.pth")                 # device="auto": a GPU if there is one
    tracks, occluded = predictor("clip.mp4", grid_size=10)         # or a (T, H, W, 3) uint8 array
    tracks, occluded = predictor(video, queries=[[0, 120.0, 80.0]])   # (t, y, x) rows
    tracks, occluded = predictor(video, dense=4)                   # every 4th pixel of frame 0
    session = predictor.online()                                   # frames one at a time

Everything the caller sees is in the video's own pixels: queries (N, 3) as (t, y, x), tracks
(N, T, 2) as (x, y), pixel centres at integers (``docs/conventions.md``). A call reads the video
(decoded on demand when it is a file), makes the queries, and runs :func:`gmrw.track` on them with
the predictor's options: ``predictor(video, queries)`` is ``gmrw.track(predictor.model,
video[None], queries[None], options=predictor.options)``, on one video, returned on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import torch

from gmrw.checkpoint import CheckpointError, choose_checkpoint, load_model
from gmrw.models import compile_network
from gmrw.models import flush_denormals as flush
from gmrw.tracking.driver import track
from gmrw.tracking.frames import FrameSource, TensorFrames, VideoFile
from gmrw.tracking.inputs import check_video_array, make_queries
from gmrw.tracking.online import OnlineSession
from gmrw.tracking.options import TrackingOptions, resolve_options
from gmrw.tracking.precision import compute_dtype

log = logging.getLogger(__name__)


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
        mode, method, window, upsample_factor, processing_size, round_trip, chained_candidate,
            fine_size, round_trip_correction: how to track, as
            :func:`gmrw.track`; ``None`` takes the model's own defaults (our checkpoints record
            how their model tracks best; the paper's weights, the paper's setting), else the
            library's. ``processing_size`` is the short side of the frames the model sees (0: the
            video's own size).
        pair_batch_size: frame pairs per model call (memory vs. speed).
        progress: show a progress bar over frame pairs.
        flush_denormals: on the CPU, turn on flush-denormals (process-wide, as ``gmrw-track``
            does; see :func:`gmrw.flush_denormals`), which makes the model many times faster.
        compile: ``torch.compile`` the model's backbone and transformer, in place (a model you
            pass in is compiled too; :func:`gmrw.models.compile_network`). The first pairs at each
            new frame size or pair count compile first, so it pays off on long videos only.
        precision: the encoder's and transformer's arithmetic, ``"fp32"``, ``"bf16"`` or
            ``"auto"`` (bf16 where its matmuls are fast: a CPU with AMX, a bf16 GPU), as
            :func:`gmrw.track`; resolved once, here (:attr:`compute_dtype`).
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
        chained_candidate: bool | None = None,
        fine_size: int | None = None,
        round_trip_correction: bool | None = None,
        pair_batch_size: int = 8,
        progress: bool = False,
        flush_denormals: bool = True,
        compile: bool = False,
        precision: str = "fp32",
    ):
        if isinstance(pair_batch_size, bool) or not isinstance(pair_batch_size, int) or pair_batch_size < 1:
            raise ValueError(f"pair_batch_size must be a positive integer, got {pair_batch_size!r}")
        self.device = pick_device(device)
        #: The encoder's and transformer's autocast dtype, None for float32 (``precision`` resolved,
        #: before the checkpoint loads, so that a bad name is told at once).
        self.compute_dtype = compute_dtype(precision, self.device)
        if self.device.type == "cpu" and flush_denormals:
            flush(True)
        self.model = load_tracker(checkpoint, self.device)
        if compile:
            try:
                compile_network(self.model)
            except RuntimeError as exc:  # no C++ compiler: say so as the bad setting it is
                raise ValueError(f"compile=True: {exc}") from None
        #: The resolved options (explicit, else the model's, else the library's).
        self.options: TrackingOptions = resolve_options(
            self.model,
            mode=mode,
            method=method,
            window=window,
            upsample_factor=upsample_factor,
            processing_size=processing_size,
            round_trip=round_trip,
            chained_candidate=chained_candidate,
            fine_size=fine_size,
            round_trip_correction=round_trip_correction,
        )
        self.pair_batch_size = pair_batch_size
        self.progress = progress

    @property
    def precision(self) -> str:
        """``precision`` resolved: ``"bf16"`` or ``"fp32"`` (what ``"auto"`` chose)."""
        return "fp32" if self.compute_dtype is None else "bf16"

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of the frames the model sees for a ``height`` × ``width`` video."""
        return self.options.model_size(height, width)

    def open(self, video: Any) -> FrameSource:
        """The video as a :class:`~gmrw.tracking.frames.FrameSource`: a path is decoded on demand,
        an array or tensor served from memory, a source of your own used as it is. ValueError for a
        video that cannot be tracked (no file, not a video, wrong shape or dtype, fewer than 2
        frames)."""
        if isinstance(video, FrameSource):
            source = video
        elif isinstance(video, str | os.PathLike):
            # a chained chunk's frames, so a frame between two chunks is decoded once
            source = VideoFile(video, cache_frames=self.pair_batch_size + 2)
        else:
            source = TensorFrames(check_video_array(video))
        if source.num_frames < 2:
            raise ValueError(f"video has {source.num_frames} frame(s); tracking needs at least 2")
        return source

    def make_queries(
        self,
        source: FrameSource,
        queries: Any = None,
        grid_size: int = 0,
        grid_query_frame: int = 0,
        segm_mask: Any = None,
        dense: int | None = None,
    ) -> torch.Tensor:
        """The (N, 3) (t, y, x) queries of a call on ``source``, checked against it
        (:func:`gmrw.tracking.inputs.make_queries`)."""
        return make_queries(
            source.num_frames, source.size, queries, grid_size, grid_query_frame, segm_mask, dense
        )

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
        tracks, occluded = track(
            self.model,
            source,
            points[None],
            pair_batch_size=self.pair_batch_size,
            progress=self.progress,
            options=self.options,
            precision=self.precision,
        )
        return tracks[0].cpu(), occluded[0].cpu()

    def online(self, mode: str | None = None) -> OnlineSession:
        """A session that tracks frames given one at a time (see :class:`OnlineSession`), with this
        predictor's model and options (``mode`` overrides the tracking mode)."""
        options = self.options if mode is None else replace(self.options, mode=mode)
        return OnlineSession(self.model, options, self.compute_dtype)
