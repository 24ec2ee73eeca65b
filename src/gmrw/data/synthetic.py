"""Procedural training and validation videos: the default experiment's data, offline and fast.

A video is a photo background (images bundled with scikit-image) under a slow camera motion, with
textured sprites that move with their own affine motions and occlude each other (see
:mod:`gmrw.data._procedural`). Because frames are rendered by inverse-warping textures under
known affines, ground-truth tracks and occlusion are exact.

* :class:`SyntheticTrainDataset` yields training clips (docs/CONTRACTS.md, "Training batch"):
  item ``i`` renders frames ``0`` and ``frame_gap`` of video ``(seed, i)`` and passes them through
  :class:`~gmrw.data.crops.CycleCropper`. A key may also be ``(index, sample_seed)``
  (:mod:`gmrw.data.sampling`): the video comes from the index, the crops from the seed.
* :class:`SyntheticTapVidDataset` yields TAP-Vid examples with ``first`` or ``strided`` queries.
* :class:`SyntheticDataModule` wires both into Lightning.

Positions are in frame pixels with pixel centres at integers (``x`` = column index), the
convention of ``grid_sample(..., align_corners=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gmrw.data._procedural import Scene, load_textures, render, sample_points, sample_scene, to_uint8
from gmrw.data.crops import CycleCropper
from gmrw.data.datamodule import ClipDataModule
from gmrw.data.sampling import split_key

QUERY_MODES = ("first", "strided")
# TAP-Vid's strided sampling: a query every 5 frames where the point is visible.
QUERY_STRIDE = 5
# Streams of the per-video seeds, so training and validation never share a video.
_TRAIN_STREAM, _VAL_STREAM = 0, 1


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(v) for v in size)
    if len(values) != 2:
        raise ValueError(f"expected a size (H, W) or a single int, got {size!r}")
    return values


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch ops on one thread. A sample is many tiny ops: in the main process
    (``num_workers=0``) intra-op threads only add overhead, and on a busy machine they made a
    sample 20x slower. Loader workers are single-threaded already. Switching costs under 1 µs."""
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


@dataclass(frozen=True)
class SyntheticVideo:
    """A rendered video with exact ground truth.

    video ``(T, H, W, 3)`` uint8; query_points ``(N, 3)`` float32 (t, y, x); target_points
    ``(N, T, 2)`` float32 (x, y); occluded ``(N, T)`` bool; point_layers ``(N,)`` int64 (0 = background,
    higher = sprite in z-order); scene: the :class:`~gmrw.data._procedural.Scene` it was rendered from.
    """

    video: torch.Tensor
    query_points: torch.Tensor
    target_points: torch.Tensor
    occluded: torch.Tensor
    point_layers: torch.Tensor
    scene: Scene


def tapvid_queries(
    target_points: np.ndarray, occluded: np.ndarray, query_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """TAP-Vid query sampling from full tracks ``(N, T, 2)`` / ``(N, T)``.

    ``first``: one query per track, at its first visible frame. ``strided``: a query at every
    frame ``0, 5, 10, ...`` where the track is visible (frames outer, tracks inner, as TAP-Vid).
    Tracks never visible are dropped. Returns ``(query_points (M, 3) (t, y, x), track_index (M,))``.
    """
    if query_mode not in QUERY_MODES:
        raise ValueError(f"unknown query mode {query_mode!r}; choose one of {QUERY_MODES}")
    visible = ~occluded
    if query_mode == "first":
        tracks = np.flatnonzero(visible.any(1))
        frames = visible[tracks].argmax(1)
    else:
        pairs = [
            (t, n) for t in range(0, visible.shape[1], QUERY_STRIDE) for n in np.flatnonzero(visible[:, t])
        ]
        frames = np.array([t for t, _ in pairs], dtype=np.int64)
        tracks = np.array([n for _, n in pairs], dtype=np.int64)
    xy = target_points[tracks, frames]
    queries = np.stack([frames, xy[:, 1], xy[:, 0]], axis=1) if len(tracks) else np.zeros((0, 3))
    return queries, tracks


def render_video(
    seed: int | Sequence[int],
    num_frames: int = 10,
    height: int = 64,
    width: int = 64,
    num_sprites: int = 4,
    num_points: int = 24,
    query_mode: str = "first",
    motion_scale: float = 1.0,
    sprite_fraction: float = 0.5,
) -> SyntheticVideo:
    """Video ``seed`` (a pure function of its arguments) with ``num_points`` exact tracks.

    Tracks are sampled on clearly visible background and sprite pixels of random frames
    (about ``sprite_fraction`` on sprites) and turned into TAP-Vid queries by ``query_mode``;
    in ``strided`` mode a track appears once per query, so N may exceed ``num_points``.
    """
    rng = _generator(seed)
    scene = sample_scene(rng, height, width, num_sprites, motion_scale)
    times = list(range(num_frames))
    with _single_threaded():
        video = to_uint8(render(scene, times))
    layers, uv = sample_points(scene, rng, num_points, num_frames, sprite_fraction)
    tracks, occluded = scene.tracks(layers, uv, times)
    queries, index = tapvid_queries(tracks, occluded, query_mode)
    return SyntheticVideo(
        video=video,
        query_points=torch.from_numpy(queries).float(),
        target_points=torch.from_numpy(tracks[index]).float(),
        occluded=torch.from_numpy(occluded[index]),
        point_layers=torch.from_numpy(layers[index]),
        scene=scene,
    )


class SyntheticTrainDataset(Dataset):
    """Training clips from procedural videos; a sample is a pure function of its key.

    Args:
        length: virtual epoch size (number of distinct videos).
        img_size1, img_size2, aug_setting: :class:`~gmrw.data.crops.CycleCropper` arguments.
        frame_size: ``(H, W)`` of the rendered frames.
        frame_gap: the pair is frames ``0`` and ``frame_gap`` of the video.
        num_sprites, motion_scale: scene arguments (:func:`render_video`).
        seed: base seed of the videos and (for bare integer keys) of the crops.
    """

    def __init__(
        self,
        length: int = 10_000,
        img_size1: int | Sequence[int] = 80,
        img_size2: int | Sequence[int] = 64,
        aug_setting: str = "setting2",
        frame_size: int | Sequence[int] = 80,
        frame_gap: int = 2,
        num_sprites: int = 4,
        motion_scale: float = 1.0,
        seed: int = 0,
    ):
        if length <= 0 or frame_gap <= 0:
            raise ValueError("length and frame_gap must be positive")
        self.length = int(length)
        self.frame_size = _size(frame_size)
        self.frame_gap = int(frame_gap)
        self.num_sprites = int(num_sprites)
        self.motion_scale = float(motion_scale)
        self.seed = int(seed)
        self.cropper = CycleCropper(_size(img_size1), _size(img_size2), aug_setting)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> torch.Tensor:
        """Frames ``0`` and ``frame_gap`` of video ``index``: ``(2, 3, H, W)`` float in [0, 255]."""
        rng = _generator((self.seed, _TRAIN_STREAM, index))
        with _single_threaded():
            scene = sample_scene(rng, *self.frame_size, self.num_sprites, self.motion_scale)
            # Rounded like a stored video's frames would be.
            return render(scene, [0, self.frame_gap]).round_()

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = split_key(key, self.seed)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} videos")
        with _single_threaded():
            clip = self.cropper(self.pair(index), generator_seed=sample_seed)
        return {
            "frames": clip.frames.float(),
            "affine_b2f": clip.affine_b2f,
            "index": torch.tensor(index, dtype=torch.int64),
        }


class SyntheticTapVidDataset(Dataset):
    """``num_videos`` fixed procedural videos as TAP-Vid examples (docs/CONTRACTS.md)."""

    def __init__(
        self,
        num_videos: int = 8,
        num_frames: int = 10,
        frame_size: int | Sequence[int] = 64,
        num_points: int = 24,
        query_mode: str = "first",
        num_sprites: int = 4,
        motion_scale: float = 1.0,
        seed: int = 0,
    ):
        if query_mode not in QUERY_MODES:
            raise ValueError(f"unknown query mode {query_mode!r}; choose one of {QUERY_MODES}")
        self.num_videos = int(num_videos)
        self.num_frames = int(num_frames)
        self.frame_size = _size(frame_size)
        self.num_points = int(num_points)
        self.query_mode = query_mode
        self.num_sprites = int(num_sprites)
        self.motion_scale = float(motion_scale)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_videos

    def video(self, index: int) -> SyntheticVideo:
        height, width = self.frame_size
        return render_video(
            (self.seed, _VAL_STREAM, index),
            num_frames=self.num_frames,
            height=height,
            width=width,
            num_sprites=self.num_sprites,
            num_points=self.num_points,
            query_mode=self.query_mode,
            motion_scale=self.motion_scale,
        )

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        video = self.video(index)
        return {
            "video": video.video,
            "query_points": video.query_points,
            "target_points": video.target_points,
            "occluded": video.occluded,
            "name": f"synthetic_{self.seed}_{index:04d}",
        }


class SyntheticDataModule(ClipDataModule):
    """Procedural training clips and TAP-Vid validation videos (the default experiment).

    Loaders as every training datamodule (:class:`~gmrw.data.datamodule.ClipDataModule`); the
    validation videos are procedural too. ``val_query_mode`` should match the module's
    ``validation.query_mode``. ``val_points`` is the number of tracks per video.
    """

    def __init__(
        self,
        batch_size: int = 8,
        num_workers: int = 0,
        img_size1: int | Sequence[int] = 80,
        img_size2: int | Sequence[int] = 64,
        aug_setting: str = "setting2",
        frame_size: int | Sequence[int] = 80,
        frame_gap: int = 2,
        num_sprites: int = 4,
        motion_scale: float = 1.0,
        train_length: int = 10_000,
        num_val_videos: int = 8,
        val_num_frames: int = 10,
        val_frame_size: int | Sequence[int] = 64,
        val_query_mode: str = "first",
        val_points: int = 24,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory)
        # Both sets are cheap descriptions (videos render on access), so they are built at once.
        self.train_set = SyntheticTrainDataset(
            length=train_length,
            img_size1=img_size1,
            img_size2=img_size2,
            aug_setting=aug_setting,
            frame_size=frame_size,
            frame_gap=frame_gap,
            num_sprites=num_sprites,
            motion_scale=motion_scale,
            seed=seed,
        )
        self.val_set = SyntheticTapVidDataset(
            num_videos=num_val_videos,
            num_frames=val_num_frames,
            frame_size=val_frame_size,
            num_points=val_points,
            query_mode=val_query_mode,
            num_sprites=num_sprites,
            motion_scale=motion_scale,
            seed=seed,
        )

    def setup(self, stage: str | None = None) -> None:
        # Load the textures before workers fork, so each worker does not read them again.
        load_textures()
        super().setup(stage)


# --------------------------------------------------------------------------------- preview


def _dot(image: np.ndarray, x: float, y: float, colour, filled: bool = True, radius: int = 2) -> None:
    h, w = image.shape[:2]
    cx, cy = int(round(x)), int(round(y))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ring = max(abs(dx), abs(dy))
            if (filled or ring == radius) and 0 <= cy + dy < h and 0 <= cx + dx < w:
                image[cy + dy, cx + dx] = colour


def preview(
    path: str | Path,
    num_clips: int = 4,
    num_videos: int = 2,
    dataset: SyntheticTrainDataset | None = None,
    val_dataset: SyntheticTapVidDataset | None = None,
    scale: int = 3,
) -> np.ndarray:
    """Write a PNG of training clips and validation tracks; returns the image (H, W, 3) uint8.

    A clip row: ``f1 | f2 | f2' | f1' | f1' warped back by affine_b2f`` (the warp matches f1
    where the crops overlap; black outside). A validation row: every frame with its tracks, filled
    dots where visible, hollow where occluded.
    """
    import imageio.v3 as iio
    import torch.nn.functional as F

    dataset = dataset or SyntheticTrainDataset(length=max(num_clips, 1))
    val_dataset = val_dataset or SyntheticTapVidDataset(num_videos=max(num_videos, 1))
    rows = []
    for i in range(num_clips):
        item = dataset[i]
        frames = item["frames"]
        h, w = frames.shape[-2:]
        grid = F.affine_grid(item["affine_b2f"][None], (1, 3, h, w), align_corners=True)
        warped = F.grid_sample(frames[3:4], grid, align_corners=True, padding_mode="zeros")
        tiles = torch.cat([frames, warped]).clamp(0, 255).round().to(torch.uint8)
        rows.append(torch.cat(list(tiles.permute(0, 2, 3, 1)), dim=1).numpy())
    rng = np.random.default_rng(0)
    for i in range(num_videos):
        example = val_dataset[i]
        video = example["video"].numpy().copy()
        colours = rng.integers(0, 256, size=(len(example["query_points"]), 3))
        for n, colour in enumerate(colours):
            for t in range(len(video)):
                x, y = example["target_points"][n, t].tolist()
                _dot(video[t], x, y, colour, filled=not bool(example["occluded"][n, t]), radius=1)
        rows.append(np.concatenate(list(video), axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    image = np.concatenate(rows, axis=0).repeat(scale, 0).repeat(scale, 1)
    iio.imwrite(path, image)
    return image


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a preview PNG of the synthetic data.")
    parser.add_argument("output", nargs="?", default="synthetic_preview.png")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--videos", type=int, default=2)
    args = parser.parse_args()
    preview(args.output, num_clips=args.clips, num_videos=args.videos)
    print(f"wrote {args.output}")
