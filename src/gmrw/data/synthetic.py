"""The default experiment's data: the procedural world (:mod:`gmrw.data.scenes`), offline.

* :class:`SyntheticTrainDataset` yields training clips (docs/CONTRACTS.md, "Training batch"):
  item ``i`` renders two frames of world video ``(seed, i)``, a random ``frame_gap`` apart, puts
  them through the camera's faults and then through :class:`~gmrw.data.crops.CycleCropper` (the
  anti-shortcut crops). A key may also be ``(index, sample_seed)`` (:mod:`gmrw.data.loaders`):
  the video comes from the index, the crops from the seed.
* :class:`SyntheticTapVidDataset` yields world videos as TAP-Vid examples with exact tracks.
* ``configs/data/synthetic.yaml`` gives both to :class:`gmrw.data.modules.ClipDataModule`, with the
  real-photo benchmark (:mod:`gmrw.data.photo_videos`) as a second validation set, so every run
  says how it does on real images.

Positions are in frame pixels with pixel centres at integers (``x`` = column index).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from gmrw.choices import QUERY_MODES, check_choice
from gmrw.data.crops import CycleCropper
from gmrw.data.loaders import split_key
from gmrw.data.queries import SceneVideo, scene_ground_truth
from gmrw.data.scenes import (
    TextureBank,
    WorldMotion,
    degrade,
    render,
    sample_points,
    sample_world_scene,
    to_uint8,
)
from gmrw.data.sizes import image_size

# Streams of the per-video seeds, so training and validation never share a video.
_TRAIN_STREAM, _VAL_STREAM = 0, 1
# Validation videos get the camera's faults at this strength (training: 1).
_VAL_DEGRADE = 0.5


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch ops on one thread. A sample is many small ops: in the main process
    (``num_workers=0``) intra-op threads only add overhead, and on a busy machine they made a
    sample 20x slower. Loader workers are single-threaded already."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _generator(seed: int | Sequence[int]) -> np.random.Generator:
    entropy = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _gap_range(frame_gap: int | Sequence[int]) -> tuple[int, int]:
    low, high = (frame_gap, frame_gap) if isinstance(frame_gap, int) else (int(v) for v in frame_gap)
    if not 1 <= low <= high:
        raise ValueError(f"frame_gap must be a positive int or a range [low, high], got {frame_gap!r}")
    return low, high


@dataclass(frozen=True)
class SyntheticVideo(SceneVideo):
    """A rendered world video with exact ground truth (:class:`~gmrw.data.queries.SceneVideo`);
    clean: the frames before the camera's faults ``(T, 3, H, W)`` float32."""

    clean: torch.Tensor


def render_video(
    seed: int | Sequence[int],
    bank: TextureBank,
    num_frames: int = 16,
    height: int = 128,
    width: int = 128,
    num_points: int = 32,
    query_mode: str = "first",
    motion: WorldMotion | None = None,
    num_objects: tuple[int, int] = (2, 6),
    degrade_strength: float = _VAL_DEGRADE,
) -> SyntheticVideo:
    """World video ``seed`` (a pure function of its arguments) with ``num_points`` exact tracks,
    turned into TAP-Vid queries by ``query_mode`` (strided mode repeats a track per query)."""
    check_choice(query_mode, QUERY_MODES, "query mode")
    rng = _generator(seed)
    with _single_threaded():
        scene = sample_world_scene(rng, height, width, bank, motion, num_objects, duration=num_frames)
        times = list(range(num_frames))
        clean = render(scene, times)
        video = to_uint8(degrade(clean, rng, degrade_strength))
    layers, uv = sample_points(scene, rng, num_points, times)
    truth = scene_ground_truth(scene, layers, uv, times, query_mode)
    return SyntheticVideo(video=video, scene=scene, clean=clean, **truth)


class SyntheticTrainDataset(Dataset):
    """Training clips from world videos; a sample is a pure function of its key.

    Args:
        length: virtual epoch size (number of distinct videos).
        img_size1, img_size2, aug_setting: :class:`~gmrw.data.crops.CycleCropper` arguments.
        frame_size: ``(H, W)`` of the rendered frames.
        frame_gap: frames between the pair: an int, or ``[low, high]`` drawn uniformly per video.
        motion_scale: scales every speed of the world (:class:`~gmrw.data.scenes.WorldMotion`).
        num_objects: ``[low, high]`` moving objects per scene.
        degrade: strength of the camera's faults (0: clean renders).
        texture_bank: number of procedural textures shared by all videos.
        seed: base seed of the videos, the textures and (for bare integer keys) the crops.
    """

    def __init__(
        self,
        length: int = 100_000,
        img_size1: int | Sequence[int] = 160,
        img_size2: int | Sequence[int] = 128,
        aug_setting: str = "setting2",
        frame_size: int | Sequence[int] = 160,
        frame_gap: int | Sequence[int] = (1, 8),
        motion_scale: float = 1.0,
        num_objects: Sequence[int] = (2, 6),
        degrade: float = 1.0,
        texture_bank: int = 256,
        seed: int = 0,
    ):
        if length <= 0:
            raise ValueError("length must be positive")
        self.length = int(length)
        self.frame_size = image_size(frame_size)
        self.frame_gap = _gap_range(frame_gap)
        self.motion = WorldMotion().scaled(float(motion_scale))
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        self.degrade = float(degrade)
        self.seed = int(seed)
        self.bank = TextureBank(int(texture_bank), side=2 * max(self.frame_size), seed=self.seed)
        self.cropper = CycleCropper(image_size(img_size1), image_size(img_size2), aug_setting)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> torch.Tensor:
        """Two frames of video ``index``, ``frame_gap`` apart: ``(2, 3, H, W)`` float in [0, 255]."""
        rng = _generator((self.seed, _TRAIN_STREAM, index))
        gap = int(rng.integers(self.frame_gap[0], self.frame_gap[1] + 1))
        with _single_threaded():
            scene = sample_world_scene(
                rng, *self.frame_size, self.bank, self.motion, self.num_objects, duration=gap
            )
            return degrade(render(scene, [0, gap]), rng, self.degrade).round_()

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = split_key(key, self.seed)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} videos")
        with _single_threaded():
            clip = self.cropper(self.pair(index), generator_seed=sample_seed)
        return clip.sample(index)


class SyntheticTapVidDataset(Dataset):
    """``num_videos`` fixed world videos as TAP-Vid examples (docs/CONTRACTS.md); each is
    rendered once and kept (validation sees the same videos every time)."""

    def __init__(
        self,
        num_videos: int = 8,
        num_frames: int = 16,
        frame_size: int | Sequence[int] = 128,
        num_points: int = 32,
        query_mode: str = "first",
        motion_scale: float = 1.0,
        num_objects: Sequence[int] = (2, 6),
        texture_bank: int = 64,
        seed: int = 0,
    ):
        check_choice(query_mode, QUERY_MODES, "query mode")
        self.num_videos = int(num_videos)
        self.num_frames = int(num_frames)
        self.frame_size = image_size(frame_size)
        self.num_points = int(num_points)
        self.query_mode = query_mode
        self.motion = WorldMotion().scaled(float(motion_scale))
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        # A bank of its own: validation textures are never training textures.
        self.bank = TextureBank(
            int(texture_bank), side=2 * max(self.frame_size), seed=self.seed_for_bank(seed)
        )
        self.seed = int(seed)
        self._cache: dict[int, SyntheticVideo] = {}

    @staticmethod
    def seed_for_bank(seed: int) -> int:
        return 1_000_000 + int(seed)

    def __len__(self) -> int:
        return self.num_videos

    def video(self, index: int) -> SyntheticVideo:
        if index not in self._cache:
            height, width = self.frame_size
            self._cache[index] = render_video(
                (self.seed, _VAL_STREAM, index),
                self.bank,
                num_frames=self.num_frames,
                height=height,
                width=width,
                num_points=self.num_points,
                query_mode=self.query_mode,
                motion=self.motion,
                num_objects=self.num_objects,
            )
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        return self.video(index).example(f"synthetic_{self.seed}_{index:04d}")
