"""Reading frame pairs from video files, and a skip list that worker processes share.

decord decodes only the frames asked for (``VideoReader.get_batch``); a reader must be opened
inside the process that uses it (a DataLoader worker), never in the parent before forking.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import sys
import warnings
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

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


def count_frames(path: str) -> int:
    """Number of frames decord reports (opens the container; decodes nothing)."""
    decord = import_decord()

    try:
        reader = decord.VideoReader(path, num_threads=1)
    except Exception as exc:  # decord raises DECORDError, a plain Exception
        raise BadVideoError(f"cannot open {path}: {exc}") from exc
    return len(reader)


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


class SharedSkipList:
    """Which items of a dataset turned out unreadable, in shared memory.

    Created in the main process before DataLoader workers start, so every worker (forked or
    spawned, persistent or not) writes to the same byte array, and the main process can report
    the skips at epoch end: a skip list kept in a plain Python list would live and die in the
    workers and the report would say "0 skipped".
    """

    def __init__(self, num_items: int):
        self._flags = mp.RawArray("b", max(1, num_items))
        self.num_items = num_items

    def mark(self, index: int) -> None:
        self._flags[index] = 1

    def is_bad(self, index: int) -> bool:
        return bool(self._flags[index])

    def indices(self) -> list[int]:
        flags = np.frombuffer(self._flags, dtype=np.int8)[: self.num_items]
        return [int(i) for i in np.flatnonzero(flags)]

    def __len__(self) -> int:
        return len(self.indices())


def warn_skip(path: str, reason: str) -> None:
    reason = reason.removeprefix(f"{path}: ")
    msg = f"skipping unreadable video {path}: {reason}"
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
