"""2-D sine position encoding, added per attention window.

The paper's model adds the same code to every split window (each quadrant with 2x2 splits
sees positions 0..h/2-1, not 0..h-1), so the transformer's windows all look alike.
"""

from __future__ import annotations

import math

import torch

from gmrw.models.windows import merge_windows, split_windows


def sine_position_code(
    height: int, width: int, channels: int, device=None, temperature: float = 10000.0
) -> torch.Tensor:
    """(channels, height, width) float32 code: first half encodes y, second half x.

    Positions are 1..n scaled to (0, 2*pi]; within each half, channel pairs (2k, 2k+1) hold
    sin/cos at frequency temperature^(-2k/half).
    """
    half = channels // 2
    eps = 1e-6
    ys = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    xs = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    ys = ys / (height + eps) * (2 * math.pi)
    xs = xs / (width + eps) * (2 * math.pi)
    k = torch.arange(half, dtype=torch.float32, device=device)
    freq = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (n,) → (n, half)
        arg = pos[:, None] / freq
        return torch.stack((arg[:, 0::2].sin(), arg[:, 1::2].cos()), dim=-1).flatten(1)

    code_y = encode(ys)[:, None, :].expand(height, width, half)
    code_x = encode(xs)[None, :, :].expand(height, width, half)
    return torch.cat((code_y, code_x), dim=-1).permute(2, 0, 1)


def add_window_position(feature: torch.Tensor, num_splits: int) -> torch.Tensor:
    """feature (B,C,h,w) + the sine code of one (h/num_splits, w/num_splits) window, tiled."""
    _, c, h, w = feature.shape
    if num_splits > 1:
        windows = split_windows(feature, num_splits)
        code = sine_position_code(h // num_splits, w // num_splits, c, feature.device)
        return merge_windows(windows + code.to(feature.dtype), num_splits)
    return feature + sine_position_code(h, w, c, feature.device).to(feature.dtype)
