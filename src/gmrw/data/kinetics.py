"""Kinetics-700-2020 frame pairs as training cycle clips.

A sample is two frames ``frame_gap`` apart (20 in the paper; clamped to the first and last frame
of shorter videos), decoded with decord (only those two frames), then the shared crop pipeline.

Broken videos (unreadable, truncated, zero frames) never stop a run: the sample is retried with
another video chosen from the sample's seed, the file is named in a warning, and it is recorded
in a :class:`SharedSkipList` that all DataLoader workers share, so the datamodule can name every
skipped file at the end of the run (:meth:`KineticsPairs.skipped_files`).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gmrw.data.crops import CycleCropper
from gmrw.data.loaders import mix_seeds, split_key
from gmrw.data.readers import kinetics as layout
from gmrw.data.readers.kinetics import list_videos
from gmrw.video import BadVideoError, read_frames

log = logging.getLogger(__name__)


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


class KineticsPairs(Dataset):
    """Map-style dataset of cycle clips.

    ``dataset[key]`` with key ``index`` or ``(index, sample_seed)`` (from
    :class:`gmrw.data.loaders.StepStreamSampler`) → dict ``frames`` (4, 3, H2, W2) float32 in
    [0, 255], ``affine_b2f`` (2, 3), ``index`` int64 (the requested index, even when a broken
    video was replaced). The frame pair and crops are a pure function of (seed, key).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        img_size1=(640, 640),
        img_size2=(512, 512),
        aug_setting: str = "setting2",
        frame_gap: int = 20,
        seed: int = 0,
        max_retries: int = 20,
    ):
        if frame_gap < 0:
            raise ValueError(f"frame_gap must be >= 0, got {frame_gap}")
        self.root = Path(root)
        self.split = split
        self.videos = [str(p) for p in list_videos(root, split)]
        self.cropper = CycleCropper(img_size1, img_size2, aug_setting)
        self.frame_gap = int(frame_gap)
        self.seed = int(seed)
        self.max_retries = int(max_retries)
        self.skips = SharedSkipList(len(self.videos))

    @staticmethod
    def check_root(root: str | os.PathLike, split: str = "train") -> None:
        """FileNotFoundError naming what is missing unless ``root`` has the Kinetics layout;
        cheap, so a run can check its ``data.root`` before building anything."""
        layout.check_root(root, split)

    def __len__(self) -> int:
        return len(self.videos)

    def skipped_files(self) -> list[str]:
        return [self.videos[i] for i in self.skips.indices()]

    def _pick_video(self, index: int, sample_seed: int, attempt: int) -> int:
        if attempt == 0:
            return index
        # Another video, deterministically from the sample's seed; avoid ones known to be bad.
        rng = np.random.default_rng(mix_seeds(sample_seed, attempt, 7))
        for _ in range(8):
            cand = int(rng.integers(0, len(self.videos)))
            if not self.skips.is_bad(cand):
                return cand
        return cand

    def load_pair(self, video_index: int, sample_seed: int) -> tuple[np.ndarray, tuple[int, ...]]:
        rng = np.random.default_rng(mix_seeds(sample_seed, video_index, 1))
        return read_frames(self.videos[video_index], frame_gap=self.frame_gap, rng=rng)

    def __getitem__(self, key) -> dict[str, Any]:
        index, sample_seed = split_key(key, self.seed)
        last_error = None
        for attempt in range(self.max_retries + 1):
            vid = self._pick_video(index, sample_seed, attempt)
            if attempt > 0 and self.skips.is_bad(vid):
                continue
            try:
                frames, _ = self.load_pair(vid, sample_seed)
            except BadVideoError as exc:
                last_error = exc
                if not self.skips.is_bad(vid):
                    self.skips.mark(vid)
                    warn_skip(self.videos[vid], str(exc))
                continue
            pair = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
            clip = self.cropper(pair, generator_seed=mix_seeds(sample_seed, 2))
            return clip.sample(index)
        raise RuntimeError(
            f"{self.max_retries + 1} videos in a row were unreadable for sample {index} "
            f"(last: {last_error}); is {self.root / self.split} a valid Kinetics folder?"
        )
