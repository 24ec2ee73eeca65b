"""Frames → flows with a model: what the offline tracker (:class:`ModelPairFlows`, pairs by the
chunk) and the online one (:class:`~gmrw.tracking.online.OnlineSession`, one new frame at a time)
share, so both compute a pair's flows the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gmrw.tracking.core import Pair
from gmrw.tracking.options import TrackingOptions


class FlowReader:
    """A model's flows between frames served at ``frame_size`` (H, W), in pixels of that size.

    Frames become model input (float, on the model's device, resized to ``model_size``; bilinear,
    aligned corners, antialiased when shrinking, as the paper's evaluation upsamples). With a GMRW
    (a model with ``encode``, ``refine`` and ``flow_from_features``; :attr:`shared`) a frame is
    encoded once whatever pairs it is in, and both directions of a pair are read from one
    refinement: the feature transformer treats its two inputs symmetrically, so ``refine(b, a)`` is
    ``refine(a, b)`` swapped. Any other model goes through ``flow(src, dst, ...)``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        frame_size: tuple[int, int],
        model_size: tuple[int, int] | None = None,
        method: str = "weighted_sum",
        window: float | None = None,
        fallback_device: torch.device | str = "cpu",
    ):
        self.model = model
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.model_size = tuple(model_size) if model_size is not None else self.frame_size
        self.method = method
        self.window = window
        self.shared = all(
            callable(getattr(model, name, None)) for name in ("encode", "refine", "flow_from_features")
        )
        try:
            self.device = next(model.parameters()).device
        except (StopIteration, AttributeError):
            self.device = torch.device(fallback_device)

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """(K, H, W, 3) frames in [0, 255] → (K, 3, H', W') float32 model input on its device."""
        # NCHW: the backbone's convolutions run ~2× slower on the channels-last view of (K, H, W, 3)
        x = frames.to(self.device).permute(0, 3, 1, 2).float().contiguous()
        if self.model_size != self.frame_size:
            shrink = self.model_size[0] < self.frame_size[0] or self.model_size[1] < self.frame_size[1]
            x = F.interpolate(x, size=self.model_size, mode="bilinear", align_corners=True, antialias=shrink)
        return x

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(K, H, W, 3) frames → what a pair needs of each: encoded features with a GMRW, else the
        prepared frames themselves."""
        x = self.prepare(frames)
        return self.model.encode(x) if self.shared else x

    def read(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Refined features (K, C, h, w) ×2 → (K, 2, H, W) float32 flows src → dst (GMRW only)."""
        return self.model.flow_from_features(src, dst, self.method, self.window, self.frame_size).float()

    def both_ways(self, src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode` outputs of K pairs → flows src → dst and dst → src, (K, 2, H, W) each."""
        if self.shared:
            refined_src, refined_dst = self.model.refine(src, dst)
            return self.read(refined_src, refined_dst), self.read(refined_dst, refined_src)
        return self.one_way(src, dst), self.one_way(dst, src)

    def one_way(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` outputs of K pairs → (K, 2, H, W) flows src → dst."""
        if self.shared:
            return self.read(*self.model.refine(src, dst))
        return self.flow(src, dst)

    def flow(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Prepared frames (K, 3, H', W') ×2 → (K, 2, H, W) flows through ``model.flow``."""
        flow = self.model.flow(src, dst, method=self.method, window=self.window, size=self.frame_size)
        return flow.float()


class ModelPairFlows:
    """The pair-flow function backed by a model: ``(b, src, dst)`` triples → (K, 2, H, W) flows.

    Frames are converted to float [0, 255], resized to ``model_size`` (H', W') (default: scaled by
    ``upsample_factor``) on the fly, and sent to the model ``pair_batch_size`` pairs at a time;
    flows are resized to the original (H, W) by the model, so tracks stay in input pixels. Within a
    chunk each frame is encoded once however many pairs it is in, and a pair asked for in both
    directions (chained mode's forward and backward flows) is refined once (see
    :class:`FlowReader`), which halves chained mode's cost.

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
        self.video = video
        self.height, self.width = int(video.shape[2]), int(video.shape[3])
        if model_size is None:
            model_size = TrackingOptions(upsample_factor=upsample_factor).model_size(self.height, self.width)
        self.reader = FlowReader(model, (self.height, self.width), model_size, method, window, video.device)
        self.model = model
        self.model_size = self.reader.model_size
        self.device = self.reader.device
        self.pair_batch_size = max(1, int(pair_batch_size))
        self.progress = progress
        self.calls = 0  # flows computed so far (tests check nothing is wasted)

    def frames(self, index: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(video, frame) pairs → (K, 3, H', W') float32 on the model's device."""
        bs = torch.tensor([i for i, _ in index])
        ts = torch.tensor([t for _, t in index])
        return self.reader.prepare(self.video[bs.to(self.video.device), ts.to(self.video.device)])

    def __call__(self, pairs: Sequence[Pair]) -> torch.Tensor:
        if not self.reader.shared:
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
                flows = self.reader.read(src[rows], dst[rows])
                for flow, k in zip(flows, rows):
                    for position, r in requests[chunk[k]]:
                        if r == reverse:
                            out[position] = flow
                produced += len(rows)
            self.calls += produced
            if self.progress is not None:
                self.progress.update(produced)
        return torch.stack(out) if out else torch.zeros(0, 2, self.height, self.width, device=self.device)

    def _one_by_one(self, pairs: Sequence[Pair]) -> torch.Tensor:
        out = []
        for i in range(0, len(pairs), self.pair_batch_size):
            chunk = pairs[i : i + self.pair_batch_size]
            src = self.frames([(b, s) for b, s, _ in chunk])
            dst = self.frames([(b, d) for b, _, d in chunk])
            out.append(self.reader.flow(src, dst))
            self.calls += len(chunk)
            if self.progress is not None:
                self.progress.update(len(chunk))
        return torch.cat(out)
