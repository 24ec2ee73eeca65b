"""Frames and their coordinates: where a video's frames come from, and how they reach the model.

A :class:`FrameSource` serves one video's frames on demand at the video's own size: a tensor in
memory (:class:`TensorFrames`) or a file decoded a few frames at a time (:class:`VideoFile`), so a
long video is never held whole. It answers what the tracking loop asks of a (B, T, H, W, 3) video
tensor — ``shape`` (1, T, H, W, 3) and ``video[b, t]`` — so the same loop runs over either.

Coordinates (``docs/conventions.md``): pixel centres at integers, (0, 0) the centre of the
top-left pixel, x right, y down. The model sees frames resized to ``model_size`` (H', W') by
:func:`model_input`, bilinearly with *aligned corners* (the paper's evaluation), which maps input
pixel centre ``p`` onto model pixel ``p · (H' − 1) / (H − 1)``; the model's flows come back
through the same map (:meth:`gmrw.models.GMRW.point_flow`), read at the points' positions in the
input's pixels. Points are never resampled, so tracks are exact in the input's pixels.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gmrw.video import import_decord

#: Frame sides the model accepts are multiples of this: 1/4-resolution features split in 2×2 windows.
SIZE_MULTIPLE = 8


def scaled_size(
    height: int, width: int, short_side: int | None = None, scale: float | None = None
) -> tuple[int, int]:
    """(H, W) scaled so the short side is ``short_side`` (0 or None: by ``scale``, default 1),
    aspect kept, each side rounded to a multiple of 8 (the model's 2×2 windows on 1/4-size
    features)."""
    if short_side:
        scale = short_side / min(height, width)
    scale = 1.0 if scale is None else float(scale)
    m = SIZE_MULTIPLE
    return max(m, int(round(height * scale / m)) * m), max(m, int(round(width * scale / m)) * m)


def model_input(frames: torch.Tensor, size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """(K, H, W, 3) frames in [0, 255] → (K, 3, H', W') float32 on ``device`` at ``size``:
    bilinear with aligned corners (antialiased when shrinking), the map of the module docstring.
    Frames are converted one at a time, so a 1080p video costs one float frame (25 MB) at a time."""
    size = (int(size[0]), int(size[1]))
    frames = torch.as_tensor(frames)
    out = []
    for frame in frames:
        # NCHW: the backbone's convolutions run ~2× slower on the channels-last view of (H, W, 3)
        x = frame.to(device).permute(2, 0, 1)[None].float().contiguous()
        if tuple(x.shape[-2:]) != size:
            shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True, antialias=shrink)
        out.append(x)
    return torch.cat(out) if out else torch.zeros(0, 3, *size, device=device)


class VideoReadError(ValueError):
    """A video file that cannot be read (missing, not a video, no frames), with a message naming it."""


class FrameSource(ABC):
    """Frames of one video, read on demand: a subclass implements :meth:`read`.

    The last ``cache_frames`` frames read are kept (a chained step reads a frame for two pairs).
    """

    device = torch.device("cpu")
    #: Frames per second, where the source knows it.
    fps: float | None = None

    def __init__(self, num_frames: int, height: int, width: int, cache_frames: int = 16):
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.cache_frames = max(0, int(cache_frames))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    @abstractmethod
    def read(self, indices: Sequence[int]) -> torch.Tensor | np.ndarray:
        """Frames ``indices`` → (K, height, width, 3) uint8 or float in [0, 255]."""

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.num_frames, self.height, self.width, 3)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return (self.height, self.width)

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Like :meth:`read`, through the cache; frames missing from it are read in one call."""
        indices = [int(i) for i in indices]
        missing = sorted({i for i in indices if i not in self._cache})
        fresh = dict(zip(missing, torch.as_tensor(self.read(missing)))) if missing else {}
        out = [self._cache[i] if i in self._cache else fresh[i] for i in indices]
        for i in indices:
            if i in fresh:
                self._cache[i] = fresh[i]
            if i in self._cache:
                self._cache.move_to_end(i)
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return torch.stack(out)

    def __getitem__(self, index: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        videos, times = index
        if torch.as_tensor(videos).ne(0).any():
            raise IndexError("a FrameSource holds one video (index 0)")
        return self.frames(torch.as_tensor(times).reshape(-1).tolist())

    def __len__(self) -> int:
        return self.num_frames

    def iter_frames(self, chunk: int = 16) -> Iterator[np.ndarray]:
        """Every frame in order as (H, W, 3) uint8 arrays (for drawing), ``chunk`` read at a time
        (bypassing the cache)."""
        for start in range(0, self.num_frames, chunk):
            frames = torch.as_tensor(self.read(list(range(start, min(start + chunk, self.num_frames)))))
            yield from frames.float().round().clamp(0, 255).to(torch.uint8).numpy()


class TensorFrames(FrameSource):
    """A :class:`FrameSource` over a (T, H, W, 3) tensor or array already in memory."""

    def __init__(self, video, cache_frames: int = 0):
        video = torch.as_tensor(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"video must be (T, H, W, 3), got {tuple(video.shape)}")
        super().__init__(video.shape[0], video.shape[1], video.shape[2], cache_frames)
        self.video = video

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        return self.video[list(indices)]


class VideoFile(FrameSource):
    """Frames of a video file decoded on demand with decord: only the frames asked for are
    decoded, so memory does not grow with the video's length."""

    def __init__(self, path: str | os.PathLike, cache_frames: int = 16):
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
        try:
            fps = float(self.reader.get_avg_fps())
        except Exception:
            fps = 0.0
        self.fps = fps if math.isfinite(fps) and fps > 0 else 25.0
        super().__init__(count, first.shape[0], first.shape[1], cache_frames)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """(K, H, W, 3) uint8."""
        try:
            return self.reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:
            raise VideoReadError(
                f"cannot decode frames {indices[0]}…{indices[-1]} of {self.path}: {type(exc).__name__}: {exc}"
            ) from None
