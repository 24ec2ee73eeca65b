"""Videos whose true motion is known: a smooth random texture translating by whole pixels."""

from __future__ import annotations

import numpy as np


def textured_video(
    num_frames: int, height: int, width: int, seed: int = 0, motion: tuple[int, int] = (1, 2)
) -> np.ndarray:
    """A smooth random texture whose content moves by ``motion`` = (d_row, d_col) integer pixels
    per frame (so its true optical flow is exactly that): (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    dr, dc = int(motion[0]), int(motion[1])
    pad_r, pad_c = abs(dr) * num_frames + 8, abs(dc) * num_frames + 8
    big_h, big_w = height + 2 * pad_r, width + 2 * pad_c
    noise = rng.random((big_h // 4 + 2, big_w // 4 + 2, 3))
    # Nearest upsampling then a box blur: blobs a few pixels wide, which video codecs keep.
    tex = np.kron(noise, np.ones((4, 4, 1)))[:big_h, :big_w]
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        tex = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, tex)
    tex = (tex - tex.min()) / max(tex.max() - tex.min(), 1e-6)
    frames = []
    for t in range(num_frames):
        # Frame t shows the texture shifted by t·motion: content at p in frame t is at p + motion in t+1.
        r0, c0 = pad_r - dr * t, pad_c - dc * t
        frames.append(tex[r0 : r0 + height, c0 : c0 + width])
    return (np.stack(frames) * 255).round().astype(np.uint8)
