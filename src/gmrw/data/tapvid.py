"""TAP-Vid evaluation sets as map-style datasets, and the :class:`TapVidDataModule`.

Every item follows docs/CONTRACTS.md: ``video`` (T, H, W, 3) uint8 at ``resolution``,
``query_points`` (N, 3) float32 (t, y, x) pixels, ``target_points`` (N, T, 2) float32 (x, y)
pixels, ``occluded`` (N, T) bool, ``name`` str.

Formats (``format=``):

* ``tapvid_davis``: ``tapvid_davis.pkl``, a dict name → {video, points, occluded};
* ``tapvid_rgb_stacking``: ``tapvid_rgb_stacking.pkl``, a list of the same;
* ``tapvid_kinetics``: a folder of ``*_of_0010.pkl`` shards (lists; frames may be JPEG bytes);
* ``tapvid_kubric``: TAP-Vid-Kubric made from MOVi-E itself: ``path`` is the TFDS data_dir of
  ``movi_e/256x256`` (as for training), ``split`` (``validation``) is read and ``num_points`` tracks
  per video are sampled from its geometry as Kubric's point-tracking reader does
  (:mod:`gmrw.data.kubric_tracks`), seeded by (``seed``, video index); queries lie on any frame, so
  ``query_mode`` does not apply (score them with the ``strided`` metric, as tapnet and the reference);
* ``tapvid_kubric_tsv``: the reference's pre-generated ``validation_data.tsv`` (already sampled
  queries at 256×256; ``query_mode`` does not apply).

``points`` are (x, y) in [0, 1]; queries are sampled as tapnet's ``sample_queries_first``
(each track's first visible frame; tracks never visible are dropped) or
``sample_queries_strided`` (every 5th frame, one query per track visible there).
Coordinates are scaled to pixels of the *output* resolution by multiplying by (W, H), as tapnet.
"""

from __future__ import annotations

import base64
import csv
import glob
import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from gmrw.data.queries import QUERY_STRIDE, check_query_mode, tapvid_queries
from gmrw.data.sampling import RankStridedSampler

FORMATS = ("tapvid_davis", "tapvid_rgb_stacking", "tapvid_kinetics", "tapvid_kubric", "tapvid_kubric_tsv")


# ------------------------------------------------------------------------------ query sampling


def sample_queries_first(occluded: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
    """Query each track at its first visible frame; tracks with no visible frame are dropped.

    occluded (N, T) bool, points (N, T, 2) (x, y) → query_points (M, 3) (t, y, x),
    target_points (M, T, 2), occluded (M, T).
    """
    return _sampled(points, occluded, "first")


def sample_queries_strided(
    occluded: np.ndarray, points: np.ndarray, stride: int = QUERY_STRIDE
) -> dict[str, np.ndarray]:
    """Every ``stride`` frames, one query per track visible at that frame (a track can give several).

    Queries are ordered by query frame, then by track, as tapnet does.
    """
    return _sampled(points, occluded, "strided", stride)


def _sampled(points, occluded, mode: str, stride: int = QUERY_STRIDE) -> dict[str, np.ndarray]:
    points, occluded = np.asarray(points), np.asarray(occluded, dtype=bool)
    queries, index = tapvid_queries(points, occluded, mode, stride)
    return {"query_points": queries, "target_points": points[index], "occluded": occluded[index]}


# ------------------------------------------------------------------------------ decoding helpers


def decode_frames(frames: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from an array or a list of encoded (JPEG/PNG) frames."""
    if isinstance(frames, np.ndarray) and frames.dtype != object:
        return frames
    if len(frames) and isinstance(frames[0], (bytes, bytearray, memoryview)):
        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(bytes(f))).convert("RGB")) for f in frames])
    return np.asarray(frames)


def resize_video(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T, size[0], size[1], 3) uint8 (bilinear, antialiased when shrinking)."""
    if tuple(video.shape[1:3]) == tuple(size):
        return video
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
    shrink = size[0] < video.shape[1] or size[1] < video.shape[2]
    x = torch.nn.functional.interpolate(
        x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink
    )
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_example(
    name: str,
    video: Any,
    points: np.ndarray,
    occluded: np.ndarray,
    query_mode: str,
    resolution: tuple[int, int] | None,
) -> dict[str, Any]:
    """Raw TAP-Vid record (points in [0, 1]) → the contract's example dict at ``resolution``."""
    video = decode_frames(video)
    if resolution is not None:
        video = resize_video(video, tuple(resolution))
    h, w = video.shape[1:3]
    points = np.asarray(points, dtype=np.float32) * np.array([w, h], dtype=np.float32)
    if query_mode == "first":
        sampled = sample_queries_first(occluded, points)
    else:
        sampled = sample_queries_strided(occluded, points)
    return {
        "video": torch.from_numpy(np.ascontiguousarray(video, dtype=np.uint8)),
        "query_points": torch.from_numpy(np.asarray(sampled["query_points"], dtype=np.float32)),
        "target_points": torch.from_numpy(np.asarray(sampled["target_points"], dtype=np.float32)),
        "occluded": torch.from_numpy(np.asarray(sampled["occluded"], dtype=bool)),
        "name": name,
    }


# ------------------------------------------------------------------------------ datasets


class TapVidDataset(Dataset):
    """One TAP-Vid benchmark; item ``i`` is video ``i`` as the contract's example dict.

    Args:
        format: one of :data:`FORMATS`.
        path: the pickle / shard folder / tsv file.
        query_mode: ``first`` or ``strided``.
        resolution: (H, W) the video is resized to (None keeps it); 256×256 in the benchmarks.
        max_videos: keep only the first ``max_videos`` videos (e.g. a quick validation set).
        num_points, seed, split: ``tapvid_kubric`` only: tracks per video (256 in tapnet's
            evaluation), the seed of their sampling, and the MOVi-E split read.
    """

    def __init__(
        self,
        format: str,
        path: str | os.PathLike,
        query_mode: str = "first",
        resolution: tuple[int, int] | list[int] | None = (256, 256),
        max_videos: int | None = None,
        num_points: int = 256,
        seed: int = 0,
        split: str = "validation",
    ):
        if format not in FORMATS:
            raise ValueError(f"unknown TAP-Vid format {format!r}; choose one of {list(FORMATS)}")
        check_query_mode(query_mode)
        self.format = format
        self.path = Path(path)
        self.query_mode = query_mode
        self.resolution = tuple(resolution) if resolution is not None else None
        self.max_videos = max_videos
        self.num_points = int(num_points)
        self.seed = int(seed)
        self.split = split
        self._movi_reader = None
        # Only an index is built here; pickles are loaded lazily per process (see _records).
        self._records_cache: list[tuple[str, Any]] | None = None
        self._index = self._build_index()

    # Each entry of the index tells how to fetch one video: (name, locator).
    def _build_index(self) -> list[tuple[str, Any]]:
        if not self.path.exists():
            raise FileNotFoundError(
                f"TAP-Vid {self.format} data not found at {self.path}: {_expected(self.format)}"
            )
        if self.format == "tapvid_kinetics":
            shards = (
                sorted(glob.glob(str(self.path / "*_of_0010.pkl")))
                if self.path.is_dir()
                else [str(self.path)]
            )
            if not shards:
                raise FileNotFoundError(f"no *_of_0010.pkl shards in {self.path}: {_expected(self.format)}")
            index = []
            for shard in shards:
                data = _load_pickle(shard)
                items = list(data.values()) if isinstance(data, dict) else list(data)
                stem = Path(shard).stem
                index += [(_kinetics_name(ex, stem, i), (shard, i)) for i, ex in enumerate(items)]
                del data, items
        elif self.format == "tapvid_kubric":
            from gmrw.data.kubric import MoviEReader  # kubric imports this module

            self._movi_reader = MoviEReader(self.path, self.split)
            index = [(f"movi_e_{self.split}_{i:04d}", i) for i in range(len(self._movi_reader))]
        elif self.format == "tapvid_kubric_tsv":
            index = [(f"kubric_{row_id}", offset) for row_id, offset in _tsv_row_offsets(self.path)]
        else:
            data = _load_pickle(self.path)
            if self.format == "tapvid_davis":
                if not isinstance(data, dict):
                    raise ValueError(f"{self.path}: expected a dict name → example (tapvid_davis.pkl)")
                index = [(str(name), name) for name in data]
            else:
                items = list(data.values()) if isinstance(data, dict) else list(data)
                index = [(f"rgb_stacking_{i:03d}", i) for i in range(len(items))]
            del data
        if self.max_videos is not None:
            index = index[: int(self.max_videos)]
        if not index:
            raise ValueError(f"TAP-Vid {self.format} at {self.path} holds no videos")
        return index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._index]

    def _pickle_items(self, path: str) -> Any:
        if self._records_cache is None or self._records_cache[0] != path:
            self._records_cache = (path, _load_pickle(path))  # type: ignore[assignment]
        return self._records_cache[1]  # type: ignore[index]

    def raw(self, index: int) -> dict[str, Any]:
        """The stored record of video ``index`` (video, points in [0, 1], occluded)."""
        name, loc = self._index[index]
        if self.format == "tapvid_kinetics":
            shard, i = loc
            data = self._pickle_items(shard)
            items = list(data.values()) if isinstance(data, dict) else data
            return items[i]
        data = self._pickle_items(str(self.path))
        if self.format == "tapvid_davis":
            return data[loc]
        items = list(data.values()) if isinstance(data, dict) else data
        return items[loc]

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, loc = self._index[index]
        if self.format == "tapvid_kubric_tsv":
            return _read_tsv_example(self.path, loc, name, self.resolution)
        if self.format == "tapvid_kubric":
            return self._movi_example(loc, name)
        rec = self.raw(index)
        return make_example(
            name, rec["video"], rec["points"], rec["occluded"], self.query_mode, self.resolution
        )

    def _movi_example(self, index: int, name: str) -> dict[str, Any]:
        from gmrw.data.kubric_tracks import TRACK_FEATURES, sample_kubric_tracks

        example = self._movi_reader.example(index, TRACK_FEATURES)
        rng = np.random.default_rng([self.seed, index])  # the same tracks on any rank or worker
        tracks = sample_kubric_tracks(example, self.num_points, rng)
        return _pixel_example(
            name, example["video"], tracks["query_points"], tracks["target_points"], tracks["occluded"],
            self.resolution,
        )  # fmt: skip


def _expected(format: str) -> str:
    return {
        "tapvid_davis": "expected the file tapvid_davis.pkl (dict name → {video, points, occluded})",
        "tapvid_rgb_stacking": "expected the file tapvid_rgb_stacking.pkl (list of {video, points, occluded})",
        "tapvid_kinetics": "expected a folder of TAP-Vid-Kinetics shards 0000_of_0010.pkl … 0009_of_0010.pkl",
        "tapvid_kubric": "expected a TFDS data_dir with movi_e/256x256/<version>/ (as for data=kubric)",
        "tapvid_kubric_tsv": "expected the reference's validation_data.tsv (id, video, query_points, "
        "target_points, occluded; base64 arrays)",
    }[format]


def _load_pickle(path: str | os.PathLike) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _kinetics_name(example: Any, stem: str, i: int) -> str:
    if isinstance(example, dict) and "video_id" in example:
        return str(example["video_id"])
    return f"{stem}_{i:04d}"


# ------------------------------------------------------------------------------ reference tsv


def _tsv_row_offsets(path: Path) -> list[tuple[str, int]]:
    """(id, byte offset) of each row, so rows are read one at a time (a real file is ~5 GB)."""
    out = []
    with open(path, "rb") as f:
        while True:
            offset = f.tell()
            line = f.readline()
            if not line:
                break
            if not line.strip():
                continue
            out.append((line.split(b"\t", 1)[0].decode(), offset))
    return out


def read_tsv_row(path: str | os.PathLike, offset: int) -> dict[str, np.ndarray]:
    """Decode one row of the reference's tsv: video (T, S, S, 3) float32 in [-1, 1], query_points
    (N, 3), target_points (N, T, 2), occluded (N, T). Shapes are inferred from the byte counts
    (queries give N, occlusion gives T, the video gives S for square frames)."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="") as f:
        f.seek(offset)
        row = next(csv.reader(f, delimiter="\t"))
    video = np.frombuffer(base64.b64decode(row[1]), dtype=np.float32)
    queries = np.frombuffer(base64.b64decode(row[2]), dtype=np.float32).reshape(-1, 3)
    n = queries.shape[0]
    occluded = np.frombuffer(base64.b64decode(row[4]), dtype=bool).reshape(n, -1)
    t = occluded.shape[1]
    targets = np.frombuffer(base64.b64decode(row[3]), dtype=np.float32).reshape(n, t, 2)
    side = int(round(np.sqrt(video.size / (t * 3))))
    if side * side * t * 3 != video.size:
        raise ValueError(f"{path}: row {row[0]}: video of {video.size} floats is not (T={t}, S, S, 3)")
    return {
        "id": row[0],
        "video": video.reshape(t, side, side, 3),
        "query_points": queries,
        "target_points": targets,
        "occluded": occluded,
    }


def _read_tsv_example(path: Path, offset: int, name: str, resolution) -> dict[str, Any]:
    row = read_tsv_row(path, offset)
    video = np.round((row["video"] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return _pixel_example(name, video, row["query_points"], row["target_points"], row["occluded"], resolution)


def _pixel_example(
    name: str, video: np.ndarray, queries: np.ndarray, targets: np.ndarray, occluded: np.ndarray, resolution
) -> dict[str, Any]:
    """An example whose coordinates are already pixels of ``video``, resized to ``resolution``
    (coordinates scaled with it)."""
    queries, targets = np.array(queries, np.float32), np.array(targets, np.float32)
    if resolution is not None and tuple(resolution) != video.shape[1:3]:
        sy, sx = resolution[0] / video.shape[1], resolution[1] / video.shape[2]
        video = resize_video(video, tuple(resolution))
        queries[:, 1] *= sy
        queries[:, 2] *= sx
        targets *= np.array([sx, sy], dtype=np.float32)
    return {
        "video": torch.from_numpy(np.ascontiguousarray(video)),
        "query_points": torch.from_numpy(queries),
        "target_points": torch.from_numpy(targets),
        "occluded": torch.from_numpy(np.array(occluded, bool)),
        "name": name,
    }


# ------------------------------------------------------------------------------ datamodule


def build_tapvid_dataset(cfg: dict | None) -> TapVidDataset | None:
    """``{format, path, query_mode, resolution, max_videos[, num_points, seed, split]}`` (or None) →
    :class:`TapVidDataset`."""
    if cfg is None:
        return None
    cfg = dict(cfg)
    if cfg.get("path") in (None, "", "???"):
        raise ValueError(f"TAP-Vid validation set needs a path; got {cfg}")
    return TapVidDataset(
        format=cfg["format"],
        path=cfg["path"],
        query_mode=cfg.get("query_mode", "first"),
        resolution=cfg.get("resolution", (256, 256)),
        max_videos=cfg.get("max_videos"),
        num_points=cfg.get("num_points", 256),
        seed=cfg.get("seed", 0),
        split=cfg.get("split", "validation"),
    )


def tapvid_loader(dataset: Dataset, rank: int = 0, world_size: int = 1, num_workers: int = 0) -> DataLoader:
    """Batch size 1, rank ``r`` of ``W`` gets videos r, r + W, … (no padding, no duplicates)."""
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=RankStridedSampler(len(dataset), rank, world_size),
        num_workers=num_workers,
        collate_fn=collate_tapvid,
    )


def collate_tapvid(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Default collation for tensors, ``name`` kept as a list of str."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def _rank_world(trainer) -> tuple[int, int]:
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


class TapVidDataModule(pl.LightningDataModule):
    """Serves one TAP-Vid benchmark for evaluation (``val``/``test``/``predict`` loaders).

    Batches have batch size 1 and are sharded over ranks without padding (rank r of W gets videos
    r, r + W, …), so run the Trainer with ``use_distributed_sampler=False``: Lightning's
    ``DistributedSampler`` would pad the last ranks with repeated videos.
    """

    def __init__(
        self,
        format: str,
        path: str,
        query_mode: str = "first",
        resolution: tuple[int, int] | list[int] | None = (256, 256),
        max_videos: int | None = None,
        num_workers: int = 0,
        num_points: int = 256,
        seed: int = 0,
        split: str = "validation",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = {
            "format": format,
            "path": path,
            "query_mode": query_mode,
            "resolution": resolution,
            "max_videos": max_videos,
            "num_points": num_points,
            "seed": seed,
            "split": split,
        }
        self.num_workers = num_workers
        self.dataset: TapVidDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = build_tapvid_dataset(self.cfg)

    def _loader(self, rank: int | None = None, world_size: int | None = None) -> DataLoader:
        self.setup()
        r, w = _rank_world(self.trainer)
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
        return tapvid_loader(self.dataset, rank, world_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()
