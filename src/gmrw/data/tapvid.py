"""TAP-Vid evaluation sets as map-style datasets (the file formats: :mod:`gmrw.data.readers.tapvid`).

Formats (``format=``):

* ``tapvid_davis``: ``tapvid_davis.pkl``, a dict name → {video, points, occluded};
* ``tapvid_rgb_stacking``: ``tapvid_rgb_stacking.pkl``, a list of the same;
* ``tapvid_kinetics``: a folder of ``*_of_0010.pkl`` shards (lists; frames may be JPEG bytes);
* ``tapvid_kubric``: TAP-Vid-Kubric made from MOVi-E itself: ``path`` is the TFDS data_dir of
  ``movi_e/256x256`` (as for training), ``split`` (``validation``) is read and ``num_points`` tracks
  per video are sampled from its geometry as Kubric's point-tracking reader does
  (:mod:`gmrw.data.readers.kubric_tracks`), seeded by (``seed``, video index); queries lie on any
  frame, so ``query_mode`` does not apply (score them with the ``strided`` metric, as tapnet and
  the reference);
* ``tapvid_kubric_tsv``: the reference's pre-generated ``validation_data.tsv`` (already sampled
  queries at 256×256; ``query_mode`` does not apply).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from gmrw.choices import QUERY_MODES, TAPVID_FORMATS, check_choice
from gmrw.data.readers.kubric_tracks import TRACK_FEATURES, sample_kubric_tracks
from gmrw.data.readers.movi_e import MoviEReader
from gmrw.data.readers.tapvid import (
    expected_layout,
    kinetics_video_name,
    load_pickle,
    make_example,
    pixel_example,
    read_tsv_example,
    read_tsv_row,
    tsv_row_offsets,
)


class TapVidDataset(Dataset):
    """One TAP-Vid benchmark; item ``i`` is video ``i`` as the contract's example dict.

    Args:
        format: one of :data:`gmrw.choices.TAPVID_FORMATS`.
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
        check_choice(format, TAPVID_FORMATS, "TAP-Vid format")
        check_choice(query_mode, QUERY_MODES, "query mode")
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
                f"TAP-Vid {self.format} data not found at {self.path}: {expected_layout(self.format)}"
            )
        if self.format == "tapvid_kinetics":
            shards = (
                sorted(glob.glob(str(self.path / "*_of_0010.pkl")))
                if self.path.is_dir()
                else [str(self.path)]
            )
            if not shards:
                raise FileNotFoundError(
                    f"no *_of_0010.pkl shards in {self.path}: {expected_layout(self.format)}"
                )
            index = []
            for shard in shards:
                data = load_pickle(shard, expected_layout(self.format))
                items = list(data.values()) if isinstance(data, dict) else list(data)
                stem = Path(shard).stem
                index += [(kinetics_video_name(ex, stem, i), (shard, i)) for i, ex in enumerate(items)]
                del data, items
        elif self.format == "tapvid_kubric":
            self._movi_reader = MoviEReader(self.path, self.split)
            index = [(f"movi_e_{self.split}_{i:04d}", i) for i in range(len(self._movi_reader))]
        elif self.format == "tapvid_kubric_tsv":
            index = [(f"kubric_{row_id}", offset) for row_id, offset in tsv_row_offsets(self.path)]
        else:
            data = load_pickle(self.path, expected_layout(self.format))
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
            self._records_cache = (path, load_pickle(path))  # type: ignore[assignment]
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

    def tsv_row(self, index: int) -> dict[str, np.ndarray]:
        """``tapvid_kubric_tsv`` only: video ``index``'s row as stored (:func:`read_tsv_row`)."""
        return read_tsv_row(self.path, self._index[index][1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, loc = self._index[index]
        if self.format == "tapvid_kubric_tsv":
            return read_tsv_example(self.path, loc, name, self.resolution)
        if self.format == "tapvid_kubric":
            return self._movi_example(loc, name)
        rec = self.raw(index)
        return make_example(
            name, rec["video"], rec["points"], rec["occluded"], self.query_mode, self.resolution
        )

    def _movi_example(self, index: int, name: str) -> dict[str, Any]:
        example = self._movi_reader.example(index, TRACK_FEATURES)
        rng = np.random.default_rng([self.seed, index])  # the same tracks on any rank or worker
        tracks = sample_kubric_tracks(example, self.num_points, rng)
        return pixel_example(
            name, example["video"], tracks["query_points"], tracks["target_points"], tracks["occluded"],
            self.resolution,
        )  # fmt: skip
