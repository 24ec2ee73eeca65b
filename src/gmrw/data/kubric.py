"""Kubric MOVi-E videos as training cycle clips (the reader: :mod:`gmrw.data.readers.movi_e`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gmrw.data.crops import CycleCropper
from gmrw.data.loaders import mix_seeds, split_key
from gmrw.data.readers import movi_e
from gmrw.data.readers.movi_e import MoviEReader, decode_flows


class KubricPairs(Dataset):
    """Map-style dataset of cycle clips from MOVi-E videos.

    ``dataset[key]`` (``index`` or ``(index, sample_seed)``) → ``frames`` (4, 3, H2, W2) float32
    in [0, 255], ``affine_b2f`` (2, 3), ``index``. Frames are consecutive (``frame_gap`` apart) or,
    with ``random_frame_skip``, a gap drawn from 1…``max_frame_skip`` (clamped to the video);
    the start frame is uniform. All randomness comes from (seed, key).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        img_size1=(640, 640),
        img_size2=(512, 512),
        aug_setting: str = "setting2",
        frame_gap: int = 1,
        random_frame_skip: bool = False,
        max_frame_skip: int = 20,
        seed: int = 0,
    ):
        self.reader = MoviEReader(root, split)
        self.cropper = CycleCropper(img_size1, img_size2, aug_setting)
        self.frame_gap = int(frame_gap)
        self.random_frame_skip = bool(random_frame_skip)
        self.max_frame_skip = int(max_frame_skip)
        self.seed = int(seed)

    @staticmethod
    def check_root(root: str | os.PathLike, split: str = "train") -> None:
        """FileNotFoundError naming what is missing unless ``root`` holds MOVi-E's ``split``;
        cheap (reads no record), so a run can check its ``data.root`` before building anything."""
        movi_e.check_root(root, split)

    def __len__(self) -> int:
        return len(self.reader)

    def pick_frames(self, num_frames: int, rng: np.random.Generator) -> tuple[int, int]:
        gap = int(rng.integers(1, self.max_frame_skip + 1)) if self.random_frame_skip else self.frame_gap
        gap = min(gap, num_frames - 1)
        first = int(rng.integers(0, num_frames - gap))
        return first, first + gap

    def __getitem__(self, key) -> dict[str, Any]:
        index, sample_seed = split_key(key, self.seed)
        rng = np.random.default_rng(mix_seeds(sample_seed, 1))
        frames, _ = self.reader.video_frames(index, lambda n: self.pick_frames(n, rng))  # (2, H, W, 3)
        pair = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        clip = self.cropper(pair, generator_seed=mix_seeds(sample_seed, 2))
        return clip.sample(index)

    def video_with_flows(self, index: int) -> dict[str, Any]:
        """Whole video ``index`` with decoded ground-truth flows, for diagnostics:
        ``video`` (T, H, W, 3) uint8, ``forward_flow`` / ``backward_flow`` (T, 2, H, W) (dx, dy) px."""
        ex = self.reader.example(index, ("video", "forward_flow", "backward_flow", "metadata"))
        forward, backward = decode_flows(ex)
        name = ex["metadata"]["video_name"]
        return {
            "video": ex["video"],
            "forward_flow": forward,
            "backward_flow": backward,
            "name": name.decode() if isinstance(name, bytes) else str(name),
        }
