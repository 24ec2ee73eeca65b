"""Tracking a video that is not in memory: frames are fetched on demand from a :class:`FrameSource`.

:func:`gmrw.track` takes the whole video as one tensor, which is right for TAP-Vid clips but not
for a long video file. :func:`track_source` runs the same chained/direct tracking while reading
only the frames of the pairs it is about to compute (chained mode walks consecutive pairs, so a
video of any length needs a handful of frames at a time). Peak memory is then one chunk of
``pair_batch_size`` pairs at the model's input size, plus the (N, T, 2) tracks, plus, in chained
mode with ``cache_flows``, two (2, H, W) flows per step between the first and last query frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence

import torch

from gmrw.tracking.api import ModelPairFlows, check_queries, count_pairs
from gmrw.tracking.core import chained_tracks, direct_tracks
from gmrw.tracking.options import resolve_options


class FrameSource(ABC):
    """Frames of one video, read on demand: a subclass implements :meth:`read`.

    It also answers the two things :class:`~gmrw.tracking.ModelPairFlows` asks of a video tensor,
    ``shape`` (1, T, H, W, 3) and indexing ``source[b, t]`` with index tensors, so it can stand in
    for one. The last ``cache_frames`` frames read are kept (a chained step reads each frame up to
    four times: as source and target of the forward and the backward pair).
    """

    device = torch.device("cpu")

    def __init__(self, num_frames: int, height: int, width: int, cache_frames: int = 32):
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.cache_frames = max(0, int(cache_frames))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    @abstractmethod
    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` → (K, H, W, 3) uint8 or float in [0, 255]."""

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


class TensorFrames(FrameSource):
    """A :class:`FrameSource` over a (T, H, W, 3) tensor or array already in memory."""

    def __init__(self, video):
        video = torch.as_tensor(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"video must be (T, H, W, 3), got {tuple(video.shape)}")
        super().__init__(video.shape[0], video.shape[1], video.shape[2], cache_frames=0)
        self.video = video

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        return self.video[list(indices)]


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
    mode = options.mode
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

    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = count_pairs(mode, batched, t, options.round_trip is not None)
        if mode == "chained" and not cache_flows and len(queries):
            frames = torch.round(queries[:, 0]).long()
            total += 2 * max(0, int(frames.max()) - int(frames.min()))  # steps both sweeps compute
        bar = tqdm(total=total, desc=f"gmrw {mode} tracking", unit="pair")
    flows = ModelPairFlows(
        model,
        source,
        method=options.method,
        window=options.window,
        pair_batch_size=pair_batch_size,
        progress=bar,
        model_size=options.model_size(h, w),
    )
    try:
        with torch.no_grad():
            if mode == "chained":
                steps = max(1, pair_batch_size // 2)
                tracks, visible = chained_tracks(batched, t, (h, w), flows, steps, cache_flows)
            else:
                tracks, visible = direct_tracks(
                    batched, t, (h, w), flows, max(1, pair_batch_size), options.round_trip
                )
    finally:
        if bar is not None:
            bar.close()
    return tracks[0], ~visible[0]
