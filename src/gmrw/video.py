"""Video files and frames: decoding (decord), resizing, and writing mp4s (imageio-ffmpeg).

Frames are (T, H, W, 3), uint8 or float in [0, 255]. decord decodes only the frames asked for
(``VideoReader.get_batch``); a reader must be opened inside the process that uses it (a
DataLoader worker), never in the parent before forking.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: File name endings of the videos a dataset folder is searched for (Kinetics; the downloader).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")


def import_decord():
    """``decord``, imported so that its bundled zlib cannot shadow the system's.

    decord loads its libraries into the global symbol scope, among them a zlib 1.2.3. A library
    loaded afterwards that looks zlib up globally binds to that old copy: TensorFlow's PNG decoder
    (16-bit MOVi-E layers, TAP-Vid-Kubric) then fails with "Invalid PNG" in any process that read
    a video first. Loading the system zlib globally before decord keeps later lookups on it.
    """
    if "decord" not in sys.modules:
        try:
            ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1", mode=ctypes.RTLD_GLOBAL)
        except OSError:  # no system zlib to prefer: nothing to protect
            pass
    import decord

    return decord


class BadVideoError(RuntimeError):
    """A video that cannot give the frames asked for (unreadable, truncated or empty)."""


def pair_indices(num_frames: int, frame_gap: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two frame indices ``frame_gap`` apart, chosen uniformly; clamped to (0, last) for short videos."""
    if num_frames <= 0:
        raise BadVideoError("video has no frames")
    if num_frames - 1 <= frame_gap:
        return 0, num_frames - 1
    first = int(rng.integers(0, num_frames - frame_gap))
    return first, first + frame_gap


def read_frames(
    path: str,
    indices: Sequence[int] | None = None,
    frame_gap: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Decode the given frames of ``path`` (or a random ``frame_gap`` pair): (K, H, W, 3) uint8.

    Raises :class:`BadVideoError` naming the file for anything decord cannot do.
    """
    decord = import_decord()

    try:
        reader = decord.VideoReader(path, num_threads=1)
        n = len(reader)
        if indices is None:
            indices = pair_indices(n, frame_gap, rng or np.random.default_rng())
        if n == 0 or max(indices) >= n:
            raise BadVideoError(f"{path}: {n} frames, asked for {list(indices)}")
        frames = reader.get_batch(list(indices)).asnumpy()
    except BadVideoError:
        raise
    except Exception as exc:  # DECORDError and friends
        raise BadVideoError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise BadVideoError(f"{path}: decoded an unexpected array of shape {frames.shape}")
    return frames, tuple(int(i) for i in indices)


def resize_frames(frames: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(K, H0, W0, 3) frames → (K, H, W, 3) at ``size``: bilinear with half-pixel centres (pixel
    centres map onto each other), antialiased when shrinking. uint8 stays uint8 (rounded), float
    stays float; a numpy array comes back as a tensor. Frames already at ``size`` are returned as
    they are. The one resize of video frames in gmrw: readers, trackers and drawings share it."""
    frames = torch.as_tensor(frames)
    size = (int(size[0]), int(size[1]))
    if tuple(frames.shape[1:3]) == size:
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    shrink = size[0] < frames.shape[1] or size[1] < frames.shape[2]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    x = x.permute(0, 2, 3, 1)
    if frames.dtype == torch.uint8:
        return x.round().clamp(0, 255).to(torch.uint8)
    return x


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Write (H, W, 3) uint8 frames as an H.264 mp4, atomically: frames go to a temporary file
    next to ``path`` that replaces it only once complete, so a failure leaves nothing behind.

    Odd frame sizes are padded by one pixel (yuv420p needs even sides). Returns ``path``.
    """
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{os.getpid()}.mp4")
    count = 0
    try:
        writer = imageio.get_writer(
            str(tmp),
            fps=fps,
            codec="libx264",
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-pix_fmt", "yuv420p", "-crf", "18"],
        )
        try:
            for frame in frames:
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                writer.append_data(np.ascontiguousarray(frame, dtype=np.uint8))
                count += 1
        finally:
            writer.close()
        if count == 0:
            raise ValueError(f"no frames to write to {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
