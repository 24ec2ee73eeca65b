"""Image sizes as configs write them (an int or ``[H, W]``), in one form: ``(H, W)``."""

from __future__ import annotations

from collections.abc import Sequence


def image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` (an int for a square, or ``(H, W)``) → ``(H, W)`` ints; ValueError otherwise."""
    if isinstance(size, bool):
        raise ValueError(f"expected an image size (H, W) or a single int, got {size!r}")
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(v) for v in size)
    if len(values) != 2:
        raise ValueError(f"expected an image size (H, W) or a single int, got {size!r}")
    return values
