"""Flows at points: what the tracking modes read between two frames, from a model or from stored
dense flows.

A *pair-flow function* takes directed frame pairs ``(b, src, dst)`` (video ``b`` of the batch,
frame ``src`` to frame ``dst``) and returns :class:`PairFlows`: ``flows.at(index, xy)`` is the
flow (dx, dy) of pairs ``index`` at points ``xy`` (x, y), in pixels of the video. The model-backed
one (:class:`ModelFlows`) never builds a dense flow field: with a GMRW it encodes each frame once,
refines each unordered pair once (both directions come from one refinement), and reads flows only
at the points asked for (:meth:`gmrw.models.GMRW.point_flow`). Memory then depends on the model's
input size, not on the video's pixels. The tests drive the modes with :class:`DenseFlows`, the
paper's stored flows read by its own sampler (:func:`sample_flow`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch

from gmrw.tracking import encodings
from gmrw.tracking.encodings import TwoSizeEncoding
from gmrw.tracking.frames import model_input
from gmrw.tracking.precision import reduced_precision

Pair = tuple[int, int, int]


def model_device(model: torch.nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """Where ``model`` computes: its parameters' device, else ``fallback`` (a model without any)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device(fallback)


def sample_flow(flow: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``flow`` (B, C, H, W) at ``xy`` (B, N, 2) pixel positions (x, y) → (B, N, C).

    Matches the paper's sampler bit for bit: the four corner *indices* are clamped to the image,
    but the weights are computed from the unclamped corners, so a position outside the image is
    extrapolated from the border pixels rather than clamped to them. Positions are in pixel units
    of ``flow`` (pixel centres at integers).
    """
    b, c, h, w = flow.shape
    x = xy[..., 0].float()
    y = xy[..., 1].float()
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    x1 = x0 + 1
    y1 = y0 + 1
    x0i, x1i = x0.long().clamp(0, w - 1), x1.long().clamp(0, w - 1)
    y0i, y1i = y0.long().clamp(0, h - 1), y1.long().clamp(0, h - 1)

    flat = flow.permute(0, 2, 3, 1).reshape(b, h * w, c)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * w + xi).unsqueeze(-1).expand(-1, -1, c)
        return torch.gather(flat, 1, index)

    # Same products and summation order as the reference, so results are bit-identical.
    w00 = ((x1 - x) * (y1 - y)).unsqueeze(-1)
    w01 = ((x - x0) * (y1 - y)).unsqueeze(-1)
    w10 = ((x1 - x) * (y - y0)).unsqueeze(-1)
    w11 = ((x - x0) * (y - y0)).unsqueeze(-1)
    return w00 * gather(y0i, x0i) + w01 * gather(y0i, x1i) + w10 * gather(y1i, x0i) + w11 * gather(y1i, x1i)


class PairFlows(ABC):
    """The flows of K directed frame pairs, read at points."""

    @abstractmethod
    def at(self, index: Sequence[int], xy: torch.Tensor) -> torch.Tensor:
        """Pairs ``index`` (M of the K) and points ``xy`` (M, N, 2) (x, y) in the video's pixels →
        (M, N, 2) float32 flows (dx, dy) in the video's pixels, on ``xy``'s device."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Memory these flows hold (what keeping them costs)."""


class DenseFlows(PairFlows):
    """Dense flows (K, 2, H, W) in the video's pixels, read with the paper's sampler."""

    def __init__(self, flows: torch.Tensor):
        self.flows = flows

    def at(self, index: Sequence[int], xy: torch.Tensor) -> torch.Tensor:
        flows = self.flows[list(index)].to(device=xy.device, dtype=torch.float32)
        return sample_flow(flows, xy)

    @property
    def nbytes(self) -> int:
        return self.flows.numel() * self.flows.element_size()


class RefinedPairs(PairFlows):
    """Refined features of U frame pairs (``src`` and ``dst``, (U, C, h, w) each, whatever
    ``model.refine`` returns, or :class:`~gmrw.tracking.encodings.TwoSizeEncoding` s; indexed along
    dim 0 only) and, for each of K requests, the pair it reads and whether backwards (dst → src:
    the same refinement, roles swapped)."""

    def __init__(self, reader: FlowModel, src, dst, rows: Sequence[int], reverse: Sequence[bool]):
        self.reader, self.src, self.dst = reader, src, dst
        self.rows, self.reverse = list(rows), list(reverse)

    def at(self, index: Sequence[int], xy: torch.Tensor) -> torch.Tensor:
        index = list(index)
        out = torch.empty(len(index), xy.shape[1], 2, device=xy.device)
        for backwards in (False, True):
            picked = [m for m, i in enumerate(index) if self.reverse[i] == backwards]
            if not picked:
                continue
            device = encodings.device_of(self.src)
            rows = torch.tensor([self.rows[index[m]] for m in picked], device=device)
            src, dst = (self.dst, self.src) if backwards else (self.src, self.dst)
            points = xy[picked].to(device)
            flows = self.reader.point_flow(encodings.take(src, rows), encodings.take(dst, rows), points)
            out[picked] = flows.to(device=xy.device, dtype=torch.float32)
        return out

    @property
    def nbytes(self) -> int:
        return encodings.nbytes(self.src) + encodings.nbytes(self.dst)


class FramePairs(PairFlows):
    """For a model with only ``flow(src, dst, method=, window=, size=)``: its input frames for U
    pairs, and dense flows computed (at most ``batch`` pairs per call) the first time a request
    reads them, then sampled at the points."""

    def __init__(self, reader: FlowModel, src, dst, rows: Sequence[int], reverse: Sequence[bool], batch: int):
        self.reader, self.src, self.dst = reader, src, dst
        self.rows, self.reverse = list(rows), list(reverse)
        self.batch = batch
        self.computed: dict[tuple[int, bool], torch.Tensor] = {}

    def at(self, index: Sequence[int], xy: torch.Tensor) -> torch.Tensor:
        keys = [(self.rows[i], self.reverse[i]) for i in index]
        todo = list(dict.fromkeys(k for k in keys if k not in self.computed))
        for start in range(0, len(todo), self.batch):
            chunk = todo[start : start + self.batch]
            src = torch.stack([self.dst[u] if back else self.src[u] for u, back in chunk])
            dst = torch.stack([self.src[u] if back else self.dst[u] for u, back in chunk])
            self.computed.update(zip(chunk, self.reader.dense_flow(src, dst)))
        flows = torch.stack([self.computed[k] for k in keys]).to(device=xy.device, dtype=torch.float32)
        return sample_flow(flows, xy)

    @property
    def nbytes(self) -> int:
        held = [self.src, self.dst, *self.computed.values()]
        return sum(t.numel() * t.element_size() for t in held)


class FlowModel:
    """How tracking talks to a model, for a video of ``frame_size`` (H, W) seen by the model at
    ``model_size`` (H', W') (:func:`~gmrw.tracking.frames.model_input`).

    With a GMRW (a model with ``encode``, ``refine`` and ``point_flow``: :attr:`shared`) frames
    are encoded one by one or in batches, pairs of encodings refined, and flows read at points;
    the feature transformer treats its two inputs symmetrically, so ``refine(b, a)`` is
    ``refine(a, b)`` swapped and one refinement serves both directions of a pair. Any other model
    goes through ``flow(src, dst, ...)`` on its input frames.

    ``fine_size`` (H'', W''): a GMRW with the fine-match step computes the step's maps from the
    frames resized to this instead of ``model_size`` (:meth:`gmrw.models.GMRW.encode_fine`; None:
    from the same frames as the global match). Raises ValueError for a model without the step.

    ``compute_dtype`` (:func:`gmrw.tracking.precision.compute_dtype`): with a dtype, a GMRW's
    global-match encoder and transformer run under autocast to it and their outputs come back in
    float32; the fine-match step's maps are then computed apart, in float32 (a second pass of the
    backbone's first stage), so the sub-cell step and every read-out stay float32. Any other model's
    ``flow`` runs wholly under the autocast.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        frame_size: tuple[int, int],
        model_size: tuple[int, int],
        method: str = "weighted_sum",
        window: float | None = None,
        batch: int = 8,
        fallback_device: torch.device | str = "cpu",
        fine_size: tuple[int, int] | None = None,
        compute_dtype: torch.dtype | None = None,
    ):
        self.model = model
        self.compute_dtype = compute_dtype
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.model_size = (int(model_size[0]), int(model_size[1]))
        self.method, self.window, self.batch = method, window, max(1, int(batch))
        self.shared = all(callable(getattr(model, name, None)) for name in ("encode", "refine", "point_flow"))
        self.fine_size = None if fine_size is None else (int(fine_size[0]), int(fine_size[1]))
        if self.fine_size is not None and (not self.shared or getattr(model, "fine_features", None) is None):
            raise ValueError(
                "fine_size needs a model with the fine-match step (model.net.fine_match); "
                f"{type(model).__name__} has none"
            )
        self.device = model_device(model, fallback_device)

    def encode(self, frames: torch.Tensor) -> encodings.Encoding:
        """(K, H, W, 3) frames in [0, 255] → what a pair needs of each, along dim 0: encoded
        features with a GMRW (with ``fine_size``, a
        :class:`~gmrw.tracking.encodings.TwoSizeEncoding`), else the model's input frames
        (K, 3, H', W')."""
        x = model_input(frames, self.model_size, self.device)
        if not self.shared:
            return x
        if self.compute_dtype is None:
            if self.fine_size is None:
                return self.model.encode(x)
            coarse = self.model.encode_coarse(x)
        else:
            with reduced_precision(self.device, self.compute_dtype):
                coarse = self.model.encode_coarse(x).float()
            if getattr(self.model, "fine_features", None) is None:
                return coarse
        fine_frames = x if self.fine_size is None else model_input(frames, self.fine_size, self.device)
        maps = self.model.encode_fine(fine_frames)
        return TwoSizeEncoding(coarse, maps.half, maps.full)

    def refine(self, src, dst):
        """:meth:`encode` outputs of U pairs (GMRW) → the refined pairs, of the same kind."""
        if isinstance(src, TwoSizeEncoding):
            refined_src, refined_dst = self._transform(src.coarse, dst.coarse)
            return src._replace(coarse=refined_src), dst._replace(coarse=refined_dst)
        return self._transform(src, dst)

    def _transform(self, src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.compute_dtype is None:
            return self.model.refine(src, dst)
        with reduced_precision(self.device, self.compute_dtype):
            refined = self.model.refine(src, dst)
        return refined[0].float(), refined[1].float()

    def pairs(self, src, dst, rows: Sequence[int], reverse: Sequence[bool]) -> PairFlows:
        """:meth:`encode` outputs of U pairs → the flows of K requests (pair ``rows[k]``, backwards
        where ``reverse[k]``)."""
        if self.shared:
            return RefinedPairs(self, *self.refine(src, dst), rows, reverse)
        return FramePairs(self, src, dst, rows, reverse, self.batch)

    def point_flow(self, src, dst, xy: torch.Tensor) -> torch.Tensor:
        """Refined features of M pairs, points (M, N, 2) in the video's pixels → (M, N, 2) flows."""
        if isinstance(src, TwoSizeEncoding):
            return self.model.point_flow(
                src.coarse, dst.coarse, xy, self.method, self.window, self.frame_size, (src.maps, dst.maps)
            )
        return self.model.point_flow(src, dst, xy, self.method, self.window, self.frame_size)

    def dense_flow(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Input frames (M, 3, H', W') ×2 → (M, 2, H, W) flows through ``model.flow``."""
        with reduced_precision(self.device, self.compute_dtype):
            flows = self.model.flow(src, dst, method=self.method, window=self.window, size=self.frame_size)
        return flows.float()


class ModelFlows:
    """The pair-flow function backed by a model over a video: directed pairs → :class:`PairFlows`.

    Frames are read from ``video`` ((B, T, H, W, 3) in [0, 255], or a
    :class:`~gmrw.tracking.frames.FrameSource`) as pairs need them and encoded once: the latest
    ``pair_batch_size + 2`` encodings are kept (a chained step's frame serves the next step too),
    and :meth:`keep` holds chosen frames' (direct mode's query frames) for the whole run. Each call
    refines its unordered pairs ``pair_batch_size`` at a time, each once however many directions
    are asked for.

    Args:
        model: a GMRW, or anything with ``flow(src, dst, method=, window=, size=)``.
        model_size: (H', W') of the frames the model sees.
        progress: a tqdm bar, advanced by one per pair refined.
        fine_size: (H'', W'') of the frames the fine-match step's maps come from (None: those the
            global match sees); see :class:`FlowModel`.
        compute_dtype: the encoder's and transformer's autocast dtype, None for float32; see
            :class:`FlowModel`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        video,
        model_size: tuple[int, int],
        method: str = "weighted_sum",
        window: float | None = None,
        pair_batch_size: int = 8,
        progress=None,
        fine_size: tuple[int, int] | None = None,
        compute_dtype: torch.dtype | None = None,
    ):
        self.video = video
        self.pair_batch_size = max(1, int(pair_batch_size))
        size = (int(video.shape[2]), int(video.shape[3]))
        device = getattr(video, "device", "cpu")
        self.reader = FlowModel(
            model, size, model_size, method, window, self.pair_batch_size, device, fine_size, compute_dtype
        )
        self.progress = progress
        self.refined = 0  # pairs refined so far (tests check nothing is computed twice)
        self._recent: OrderedDict[tuple[int, int], encodings.Encoding] = OrderedDict()
        self._kept: dict[tuple[int, int], encodings.Encoding] = {}
        self._to_keep: set[tuple[int, int]] = set()
        self._keep_bytes = 0

    def keep(self, frames: Iterable[tuple[int, int]], budget_bytes: int) -> None:
        """Hold the encodings of ``frames`` ((video, frame) pairs) once made, as long as they fit in
        ``budget_bytes`` together; frames beyond that are encoded again when needed."""
        self._to_keep.update(frames)
        self._keep_bytes = int(budget_bytes)

    def encodings(self, frames: Sequence[tuple[int, int]]):
        """(video, frame) pairs → their encodings along dim 0; the missing ones encoded in one call."""
        missing = [f for f in dict.fromkeys(frames) if f not in self._kept and f not in self._recent]
        if missing:
            videos = torch.tensor([b for b, _ in missing])
            times = torch.tensor([t for _, t in missing])
            device = getattr(self.video, "device", torch.device("cpu"))
            encoded = self.reader.encode(self.video[videos.to(device), times.to(device)])
            for k, frame in enumerate(missing):
                one = encodings.take(encoded, slice(k, k + 1))
                size = encodings.nbytes(one)
                held = sum(encodings.nbytes(e) for e in self._kept.values())
                if frame in self._to_keep and held + size <= self._keep_bytes:
                    self._kept[frame] = encodings.clone(one)  # not a view that would keep its whole batch
                else:
                    self._recent[frame] = one
        for frame in frames:
            if frame in self._recent:
                self._recent.move_to_end(frame)
        out = encodings.cat([self._kept[f] if f in self._kept else self._recent[f] for f in frames])
        while len(self._recent) > self.pair_batch_size + 2:
            self._recent.popitem(last=False)
        return out

    def __call__(self, pairs: Sequence[Pair]) -> PairFlows:
        # Each unordered pair once, oriented as first asked; each request reads it one way.
        unique: dict[Pair, int] = {}
        rows, reverse = [], []
        for b, s, d in pairs:
            backwards = (b, d, s) in unique
            key = (b, d, s) if backwards else (b, s, d)
            rows.append(unique.setdefault(key, len(unique)))
            reverse.append(backwards)
        keys = list(unique)
        if not keys:
            return DenseFlows(torch.zeros(0, 2, *self.reader.frame_size))
        src_parts, dst_parts = [], []
        for i in range(0, len(keys), self.pair_batch_size):
            chunk = keys[i : i + self.pair_batch_size]
            encoded = self.encodings([(b, s) for b, s, _ in chunk] + [(b, d) for b, _, d in chunk])
            src_parts.append(encodings.take(encoded, slice(None, len(chunk))))
            dst_parts.append(encodings.take(encoded, slice(len(chunk), None)))
        src = src_parts[0] if len(src_parts) == 1 else encodings.cat(src_parts)
        dst = dst_parts[0] if len(dst_parts) == 1 else encodings.cat(dst_parts)
        flows = self._refine(src, dst, rows, reverse)
        self.refined += len(keys)
        if self.progress is not None:
            if self.progress.total is not None and self.progress.n + len(keys) > self.progress.total:
                self.progress.total = self.progress.n + len(keys)  # a dropped cache costs pairs again
            self.progress.update(len(keys))
        return flows

    def _refine(self, src, dst, rows: list[int], reverse: list[bool]) -> PairFlows:
        """Refinement ``pair_batch_size`` pairs per model call (the transformer's memory), as one
        :class:`PairFlows`."""
        step = self.pair_batch_size
        count = encodings.num_rows(src)
        if not self.reader.shared or count <= step:
            return self.reader.pairs(src, dst, rows, reverse)
        refined = [
            self.reader.refine(
                encodings.take(src, slice(i, i + step)), encodings.take(dst, slice(i, i + step))
            )
            for i in range(0, count, step)
        ]
        both = [encodings.cat([part[j] for part in refined]) for j in (0, 1)]
        return RefinedPairs(self.reader, both[0], both[1], rows, reverse)
