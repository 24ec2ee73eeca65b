"""What tracking keeps of a frame between model calls, at one size or at two.

At one size (the usual case) a frame's encoding is the tensor ``GMRW.encode`` returns: the coarse
features, with the fine-match step's maps in extra channels when the model has the step. With
``fine_size`` (:class:`~gmrw.tracking.options.TrackingOptions`) the step's maps come from larger
frames than the global match's, so they cannot share its grid: :class:`TwoSizeEncoding` holds both.
The helpers below treat either kind alike, along dim 0 (one row a frame), so the caches of
:class:`~gmrw.tracking.flows.ModelFlows` and the online tracker need not know which they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from gmrw.models.fine import LocalMaps


class TwoSizeEncoding(NamedTuple):
    """K frames encoded at two sizes: ``coarse`` (K, C, h, w) the global match's features (refined
    or not) of frames of the processing size, ``half`` (K, Cf, H2, W2) and ``full`` (K, Cp, 2·H2,
    2·W2) or None: the fine-match step's maps of the same frames at ``fine_size``."""

    coarse: torch.Tensor
    half: torch.Tensor
    full: torch.Tensor | None

    @property
    def maps(self) -> LocalMaps:
        return LocalMaps(self.half, self.full)


Encoding = torch.Tensor | TwoSizeEncoding


def _apply(fn: Callable[[torch.Tensor], torch.Tensor], encoding: Encoding) -> Encoding:
    if isinstance(encoding, TwoSizeEncoding):
        return TwoSizeEncoding(*(None if part is None else fn(part) for part in encoding))
    return fn(encoding)


def take(encoding: Encoding, index) -> Encoding:
    """Rows ``index`` (an int slice, a list or an index tensor) of an encoding."""
    return _apply(lambda t: t[index], encoding)


def clone(encoding: Encoding) -> Encoding:
    """A copy that does not keep a larger batch alive."""
    return _apply(torch.Tensor.clone, encoding)


def repeat_rows(encoding: Encoding, times: int) -> Encoding:
    """The encoding's rows ``times`` over, (times·K, ...)."""
    return _apply(lambda t: t.repeat(times, *[1] * (t.ndim - 1)), encoding)


def cat(encodings: Sequence[Encoding]) -> Encoding:
    """Encodings of one kind, concatenated along dim 0."""
    first = encodings[0]
    if isinstance(first, TwoSizeEncoding):
        parts = zip(*encodings)
        return TwoSizeEncoding(*(None if part[0] is None else torch.cat(part) for part in parts))
    return torch.cat(list(encodings))


def nbytes(encoding: Encoding) -> int:
    """Memory the encoding holds."""
    parts = encoding if isinstance(encoding, TwoSizeEncoding) else (encoding,)
    return sum(t.numel() * t.element_size() for t in parts if t is not None)


def _first(encoding: Encoding) -> torch.Tensor:
    return encoding.coarse if isinstance(encoding, TwoSizeEncoding) else encoding


def device_of(encoding: Encoding) -> torch.device:
    return _first(encoding).device


def num_rows(encoding: Encoding) -> int:
    """K, the frames (or pairs' sides) the encoding holds."""
    return len(_first(encoding))
