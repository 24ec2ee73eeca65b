"""A video file as a :class:`~gmrw.tracking.frames.FrameSource`: frames decoded on demand (decord)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmrw.tracking.frames import ResizedFrames
from gmrw.video import import_decord


class VideoReadError(ValueError):
    """A video file that cannot be read (missing, not a video, no frames), with a message naming it."""


class VideoFile(ResizedFrames):
    """Frames of a video file decoded on demand with decord, served at ``size`` (H, W) (default:
    the video's own; see :meth:`resize_to`). Only the frames asked for are decoded, so memory does
    not grow with the video's length."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None, cache_frames: int = 32):
        decord = import_decord()

        self.path = str(path)
        if not Path(self.path).is_file():
            raise VideoReadError(f"video {self.path} does not exist")
        try:
            self.reader = decord.VideoReader(self.path, num_threads=1)
            count = len(self.reader)
            first = self.reader[0].asnumpy() if count else None
        except Exception as exc:  # decord raises DECORDError, a plain Exception
            raise VideoReadError(f"cannot read video {self.path}: {type(exc).__name__}: {exc}") from None
        if first is None:
            raise VideoReadError(f"cannot read video {self.path}: it holds no frames")
        if first.ndim != 3 or first.shape[-1] != 3:
            # decord mis-decodes some tiny or exotic frame layouts (e.g. 16 px wide) this way
            raise VideoReadError(
                f"cannot read video {self.path}: decoded a frame of unexpected shape {first.shape}"
            )
        height, width = int(first.shape[0]), int(first.shape[1])
        try:
            fps = float(self.reader.get_avg_fps())
        except Exception:
            fps = 0.0
        self.fps = fps if math.isfinite(fps) and fps > 0 else 25.0
        super().__init__(count, (height, width), cache_frames)
        if size is not None:
            self.resize_to(size)

    def decode(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at the original size: (K, H0, W0, 3) uint8."""
        try:
            return self.reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:
            raise VideoReadError(
                f"cannot decode frames {indices[0]}…{indices[-1]} of {self.path}: {type(exc).__name__}: {exc}"
            ) from None
