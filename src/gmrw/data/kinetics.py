"""Kinetics-700-2020 frame pairs as training cycle clips, and :class:`KineticsDataModule`.

Layout: ``root/<split>/<class>/<youtube id>_<start>_<end>.mp4`` (``split`` is ``train`` or ``val``).
A sample is two frames ``frame_gap`` apart (20 in the paper; clamped to the first and last frame
of shorter videos), decoded with decord (only those two frames), then the shared crop pipeline.

Broken videos (unreadable, truncated, zero frames) never stop a run: the sample is retried with
another video chosen from the sample's seed, the file is named in a warning, and it is recorded
in a :class:`~gmrw.data.video_io.SharedSkipList` that all DataLoader workers share, so
:meth:`KineticsDataModule.skipped_files` at epoch end reports every skip
(see :class:`gmrw.data.kinetics.SkippedVideosReport`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from gmrw.data.crops import CycleCropper
from gmrw.data.datamodule import ClipDataModule
from gmrw.data.sampling import mix_seeds, split_key
from gmrw.data.sizes import image_size
from gmrw.data.video_io import VIDEO_EXTENSIONS, BadVideoError, SharedSkipList, read_frames, warn_skip

log = logging.getLogger(__name__)

KINETICS_LAYOUT = (
    "expected ROOT/{split}/<class name>/<video id>.mp4 (Kinetics-700-2020 as downloaded by the cvdf scripts)"
)


def list_videos(root: str | os.PathLike, split: str) -> list[Path]:
    """Sorted ``root/split/*/*.{mp4,...}``; raises with the expected layout when missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Kinetics root {root} does not exist: {KINETICS_LAYOUT.format(split=split)}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"Kinetics split folder {split_dir} does not exist: {KINETICS_LAYOUT.format(split=split)}"
        )
    videos = sorted(p for p in split_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not videos:
        raise FileNotFoundError(f"no videos found in {split_dir}: {KINETICS_LAYOUT.format(split=split)}")
    return videos


class KineticsPairs(Dataset):
    """Map-style dataset of cycle clips.

    ``dataset[key]`` with key ``index`` or ``(index, sample_seed)`` (from
    :class:`gmrw.data.sampling.StepStreamSampler`) → dict ``frames`` (4, 3, H2, W2) float32 in
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
            return {
                "frames": clip.frames,
                "affine_b2f": clip.affine_b2f,
                "index": torch.tensor(index, dtype=torch.int64),
            }
        raise RuntimeError(
            f"{self.max_retries + 1} videos in a row were unreadable for sample {index} "
            f"(last: {last_error}); is {self.root / self.split} a valid Kinetics folder?"
        )


class SkippedVideosReport(pl.Callback):
    """Logs ``data/skipped_videos`` and warns with the file names at each training epoch end
    (and at the end of fit), reading the datamodule's shared skip list."""

    def _report(self, trainer: pl.Trainer) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "skipped_files"):
            return
        files = dm.skipped_files()
        if files:
            log.warning(
                "rank %d: %d unreadable video(s) skipped so far: %s", trainer.global_rank, len(files), files
            )
        pl_module = trainer.lightning_module
        if pl_module is not None and getattr(pl_module, "_current_fx_name", None) is not None:
            pl_module.log("data/skipped_videos", float(len(files)), rank_zero_only=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "skipped_files"):
            files = dm.skipped_files()
            log.info("rank %d: %d unreadable video(s) skipped in this run", trainer.global_rank, len(files))


class KineticsDataModule(ClipDataModule):
    """Kinetics training clips + an optional TAP-Vid validation set.

    Args:
        root: the Kinetics-700-2020 folder (``train/``, ``val/``).
        batch_size, num_workers: of the training loader.
        img_size1, img_size2, aug_setting: the crop pipeline (640, 512, setting2 in the paper).
        frame_gap: frames between the pair (20 in the paper).
        seed: base seed of the sample stream.
        split: the training split folder (``train``).
        val: ``{format, path, query_mode, resolution, max_videos}`` of a TAP-Vid set, or None (no
            validation).
        max_retries: broken videos tolerated in a row for one sample before giving up.

    Use with ``Trainer(use_distributed_sampler=False)``: the training sampler shards by rank and
    resumes by step itself (:func:`gmrw.data.sampling.training_loader`).
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 1,
        num_workers: int = 4,
        img_size1=(640, 640),
        img_size2=(512, 512),
        aug_setting: str = "setting2",
        frame_gap: int = 20,
        seed: int = 0,
        split: str = "train",
        val: dict | None = None,
        max_retries: int = 20,
        pin_memory: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, val)
        self.root = root
        self.dataset_kwargs = {
            "root": root,
            "split": split,
            "img_size1": image_size(img_size1),
            "img_size2": image_size(img_size2),
            "aug_setting": aug_setting,
            "frame_gap": int(frame_gap),
            "seed": self.seed,
            "max_retries": int(max_retries),
        }

    def build_train_set(self) -> KineticsPairs:
        return KineticsPairs(**self.dataset_kwargs)

    def skipped_files(self) -> list[str]:
        return self.train_set.skipped_files() if self.train_set is not None else []

    def teardown(self, stage: str) -> None:
        """At the end of fit (a run is one epoch of the step stream), name every video skipped by
        any of this rank's loader workers: they all write to the dataset's shared skip list."""
        if stage != "fit" or self.train_set is None:
            return
        trainer = self.trainer_or_none()
        rank = trainer.global_rank if trainer is not None else 0
        files = self.skipped_files()
        if files:
            log.warning(
                "rank %d: %d unreadable video(s) skipped in this run: %s", rank, len(files), ", ".join(files)
            )
        else:
            log.info("rank %d: no unreadable videos met in this run", rank)
