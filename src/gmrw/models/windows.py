"""Split a feature map into a KxK grid of windows and back (channels first or last)."""

from __future__ import annotations

import torch


def split_windows(x: torch.Tensor, num_splits: int, channel_last: bool = False) -> torch.Tensor:
    """(B,C,H,W) → (B*K*K,C,H/K,W/K), or (B,H,W,C) → (B*K*K,H/K,W/K,C); windows row-major."""
    k = num_splits
    if channel_last:
        b, h, w, c = x.shape
        _check(h, w, k)
        x = x.reshape(b, k, h // k, k, w // k, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b * k * k, h // k, w // k, c)
    b, c, h, w = x.shape
    _check(h, w, k)
    x = x.reshape(b, c, k, h // k, k, w // k).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * k * k, c, h // k, w // k)


def merge_windows(x: torch.Tensor, num_splits: int, channel_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`split_windows`."""
    k = num_splits
    if channel_last:
        bk, h, w, c = x.shape
        x = x.reshape(bk // (k * k), k, k, h, w, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(bk // (k * k), k * h, k * w, c)
    bk, c, h, w = x.shape
    x = x.reshape(bk // (k * k), k, k, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(bk // (k * k), c, k * h, k * w)


def _check(h: int, w: int, k: int) -> None:
    if h % k or w % k:
        raise ValueError(f"feature map {h}x{w} does not split into {k}x{k} windows")
