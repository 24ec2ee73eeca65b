"""Where frames come from: a :class:`FrameSource` serves a video's frames on demand, at the size
the tracker works at.

:func:`gmrw.track` takes a whole video as one tensor, which suits TAP-Vid clips; a long video file,
or a large one that must be shrunk first, is better read a few frames at a time. A source answers
the two things the tracking loop asks of a video tensor — ``shape`` (1, T, H, W, 3) and indexing
``source[b, t]`` — so the same loop runs over either. ``original_size`` is the video's own (H0, W0);
``height`` × ``width`` is the size frames are served at (equal unless resized).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gmrw.video import resize_frames


class FrameSource(ABC):
    """Frames of one video, read on demand: a subclass implements :meth:`read`.

    The last ``cache_frames`` frames read are kept (a chained step reads each frame up to four
    times: as source and target of the forward and the backward pair).
    """

    device = torch.device("cpu")
    #: Frames per second, where the source knows it.
    fps: float | None = None

    def __init__(self, num_frames: int, height: int, width: int, cache_frames: int = 32):
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.original_size = (self.height, self.width)
        self.cache_frames = max(0, int(cache_frames))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    @abstractmethod
    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` → (K, height, width, 3) uint8 or float in [0, 255]."""

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.num_frames, self.height, self.width, 3)

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Like :meth:`read`, through the cache; frames missing from it are read in one call."""
        indices = [int(i) for i in indices]
        missing = sorted({i for i in indices if i not in self._cache})
        fresh = dict(zip(missing, self.read(missing))) if missing else {}
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


class ResizedFrames(FrameSource):
    """A source that decodes frames at the video's own size (:meth:`decode`) and serves them at
    (``height``, ``width``), resized by :func:`resize_frames` (set with :meth:`resize_to`)."""

    def __init__(self, num_frames: int, original_size: tuple[int, int], cache_frames: int = 32):
        super().__init__(num_frames, original_size[0], original_size[1], cache_frames)

    @abstractmethod
    def decode(self, indices: Sequence[int]) -> np.ndarray | torch.Tensor:
        """Frames ``indices`` at the original size: (K, H0, W0, 3) uint8 or float in [0, 255]."""

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        return resize_frames(torch.as_tensor(self.decode(indices)), (self.height, self.width))

    def resize_to(self, size: tuple[int, int]) -> None:
        """Serve frames at ``size`` (H, W) from now on."""
        self.height, self.width = int(size[0]), int(size[1])
        self._cache.clear()

    def original_frames(self, chunk: int = 16) -> Iterator[np.ndarray]:
        """Every frame at the original size, in order, as (H0, W0, 3) uint8 arrays (for drawing),
        ``chunk`` decoded at a time."""
        for start in range(0, self.num_frames, chunk):
            frames = torch.as_tensor(self.decode(list(range(start, min(start + chunk, self.num_frames)))))
            yield from frames.float().round().clamp(0, 255).to(torch.uint8).numpy()


class TensorFrames(ResizedFrames):
    """A :class:`FrameSource` over a (T, H0, W0, 3) tensor or array already in memory, served at
    ``size`` (H, W) (default: as it is), resized a frame at a time as the tracker asks for it."""

    def __init__(self, video, size: tuple[int, int] | None = None, cache_frames: int = 0):
        video = torch.as_tensor(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"video must be (T, H, W, 3), got {tuple(video.shape)}")
        super().__init__(video.shape[0], (video.shape[1], video.shape[2]), cache_frames=cache_frames)
        self.video = video
        if size is not None:
            self.resize_to(size)

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        return self.video[list(indices)]
