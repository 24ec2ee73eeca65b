"""Kubric MOVi-E (``movi_e/256x256``, TFDS): random access to the records of a local copy.

``root`` is a TFDS data_dir as copied from the public Kubric bucket::

    root/movi_e/256x256/<version>/{dataset_info.json, features.json,
                                   movi_e-train.tfrecord-000NN-of-000MM, movi_e-validation.tfrecord-…}

Reading is random access: the tfrecord shards are indexed once (record offsets, read from their
length headers in pure Python), the asked-for features are picked out of a record's bytes without
parsing the rest (:mod:`gmrw.data.readers.tf_example`; a record is ~20 MB, mostly flows), and they are
decoded with the dataset's own TFDS feature spec (``features.json``, numpy decoding). A training
clip decodes only its two PNG frames. The 16-bit PNG features (depth, normals, object coordinates:
TAP-Vid-Kubric sampling only) go through TensorFlow's PNG decoder. So a sample is a function of
its index (exact resume, any sampler, DataLoader workers) and training starts no TensorFlow graph
or thread pool in the parent process before DataLoader workers fork. TensorFlow is kept off GPUs
(``tf.config.set_visible_devices([], "GPU")``) before anything of it is used.

Ground-truth flows (diagnostics / visualisation, :func:`decode_flows`): MOVi stores
``forward_flow`` / ``backward_flow`` as uint16 (d_row, d_col) over a per-video range
``metadata/{forward,backward}_flow_range``: value = min + v / 65535 · (max − min). The stored
backward flow at ``t`` is the motion t−1 → t (kubric issue #152), so the displacement of a pixel
of frame ``t`` into frame ``t−1`` is its negation (the reference does the same).
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gmrw.data.readers.tf_example import select_features, select_from_bytes

log = logging.getLogger(__name__)

DATASET = "movi_e"
CONFIG = "256x256"
KUBRIC_LAYOUT = (
    "expected a TFDS data_dir: ROOT/movi_e/256x256/<version>/ with dataset_info.json, features.json and "
    "movi_e-<split>.tfrecord-NNNNN-of-MMMMM files (gsutil -m cp -r gs://kubric-public/tfds/movi_e/256x256 ROOT/movi_e/)"
)


def hide_gpus_from_tensorflow() -> None:
    """Make TensorFlow CPU-only (idempotent); call before any TF op."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised: devices are fixed by now
        pass


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def find_version_dir(root: str | os.PathLike) -> Path:
    """``root`` (a data_dir, ``…/movi_e``, ``…/movi_e/256x256`` or a version folder) → the newest version folder."""
    if re.match(r"^[a-zA-Z][\w+.-]*://", str(root)):
        # Records are read by byte offset from local files; a bucket would be read across the network.
        raise FileNotFoundError(
            f"Kubric root {root} is a URL; the reader takes a local copy: gmrw-data download movi_e DIR, "
            "then data.root=DIR"
        )
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"Kubric root {root} does not exist: {KUBRIC_LAYOUT}")
    for base in (root / DATASET / CONFIG, root / CONFIG, root):
        if (base / "features.json").is_file() and (base / "dataset_info.json").is_file():
            return base
        if base.is_dir():
            versions = [
                d
                for d in base.iterdir()
                if d.is_dir() and re.fullmatch(r"\d+\.\d+\.\d+", d.name) and (d / "features.json").is_file()
            ]
            if versions:
                return max(versions, key=lambda d: _version_key(d.name))
    raise FileNotFoundError(f"no movi_e/256x256 TFDS folder under {root}: {KUBRIC_LAYOUT}")


def split_files(version_dir: Path, split: str) -> list[Path]:
    files = sorted(version_dir.glob(f"{DATASET}-{split}.tfrecord-*-of-*"))
    if not files:
        raise FileNotFoundError(f"no {DATASET}-{split}.tfrecord-* files in {version_dir}: {KUBRIC_LAYOUT}")
    return files


def check_root(root: str | os.PathLike, split: str) -> None:
    """FileNotFoundError naming what is missing unless ``root`` holds a movi_e/256x256 TFDS
    folder with ``split``'s tfrecord files (cheap: reads no record)."""
    split_files(find_version_dir(root), split)


def index_tfrecord(path: Path) -> list[tuple[int, int]]:
    """(data offset, length) of each record of a TFRecord file, from the length headers only."""
    out = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            header = f.read(12)  # uint64 length + uint32 masked crc
            if len(header) < 12:
                raise ValueError(f"{path}: truncated record header at byte {pos}")
            (length,) = struct.unpack("<Q", header[:8])
            if pos + 12 + length + 4 > size:
                raise ValueError(f"{path}: truncated record at byte {pos}")
            out.append((pos + 12, length))
            pos += 12 + length + 4
            f.seek(pos)
    return out


@lru_cache(maxsize=8)
def _features(version_dir: str, keys: tuple[str, ...]):
    """The dataset's TFDS FeaturesDict restricted to ``keys`` (cached per process)."""
    hide_gpus_from_tensorflow()
    import tensorflow_datasets as tfds

    full = tfds.features.FeatureConnector.from_config(version_dir)
    missing = [k for k in keys if k not in full]
    if missing:
        raise KeyError(f"{version_dir}: features {missing} not in the dataset (has {sorted(full.keys())})")
    return tfds.features.FeaturesDict({k: full[k] for k in keys})


#: MOVi-E features stored as 16-bit PNG frames. TFDS's numpy decoding needs OpenCV for these (its
#: PIL fallback refuses them, and PIL would cut 16-bit RGB to 8 bits), so TensorFlow's PNG decoder
#: (on the CPU) reads them.
UINT16_PNG_FEATURES = ("depth", "normal", "object_coordinates")


class MoviEReader:
    """Random access to the examples of one split of a movi_e TFDS folder (``files``: only these
    shards of it, e.g. the intact ones)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", files: list[Path] | None = None):
        self.version_dir = find_version_dir(root)
        self.split = split
        self.files = list(files) if files is not None else split_files(self.version_dir, split)
        self.records: list[tuple[int, int, int]] = []  # (file index, offset, length)
        for fi, path in enumerate(self.files):
            self.records += [(fi, off, n) for off, n in index_tfrecord(path)]
        if not self.records:
            raise ValueError(f"split {split!r} of {self.version_dir} holds no examples")

    def __len__(self) -> int:
        return len(self.records)

    def raw(self, index: int) -> bytes:
        fi, off, n = self.records[index]
        with open(self.files[fi], "rb") as f:
            f.seek(off)
            return f.read(n)

    def select(self, index: int, keys) -> bytes:
        """Example ``index`` serialized with only the features ``keys``, reading from disk only
        their bytes and the names of the others."""
        fi, offset, size = self.records[index]
        with open(self.files[fi], "rb") as f:

            def read(pos: int, n: int) -> bytes:
                f.seek(offset + pos)
                return f.read(min(n, size - pos))

            return select_features(read, size, keys)

    def example(self, index: int, keys=("video", "metadata")) -> dict[str, Any]:
        """Decode example ``index`` (numpy) for the given top-level features only."""
        keys = tuple(keys)
        _features(str(self.version_dir), keys)  # names every missing feature at once
        # Only the asked-for features are parsed at all (a record is mostly flows); this also keeps
        # TFDS's numpy parser off MOVi-E's ragged instances/bboxes, on which it fails unless asked for.
        serialized = self.select(index, keys)
        out: dict[str, Any] = {}
        png16 = [k for k in keys if k in UINT16_PNG_FEATURES]
        if png16:
            feature_map = _parse_example(serialized).features.feature
            for key in png16:
                out[key] = _decode_uint16_pngs(feature_map[key].bytes_list.value, key)
        numpy_keys = tuple(k for k in keys if k not in UINT16_PNG_FEATURES)
        if numpy_keys:
            if png16:
                serialized = select_from_bytes(serialized, numpy_keys)
            ex = _features(str(self.version_dir), numpy_keys).deserialize_example_np(serialized)
            for k, v in ex.items():
                # Sequence features decode to lists of per-frame arrays.
                out[k] = np.stack(v) if isinstance(v, list) and v and isinstance(v[0], np.ndarray) else v
        return {k: out[k] for k in keys}

    def video_frames(self, index: int, pick) -> tuple[np.ndarray, list[int]]:
        """Decode only some RGB frames of video ``index``: ``pick(num_frames)`` → frame indices;
        returns (K, H, W, 3) uint8 and the indices. (MOVi-E stores each frame as a PNG.)"""
        from PIL import Image

        frames = _parse_example(self.select(index, ["video"])).features.feature["video"]
        encoded = frames.bytes_list.value
        chosen = [int(i) for i in pick(len(encoded))]
        decoded = [np.asarray(Image.open(io.BytesIO(encoded[i])).convert("RGB")) for i in chosen]
        return np.stack(decoded), chosen


def _parse_example(serialized: bytes):
    hide_gpus_from_tensorflow()
    import tensorflow as tf

    return tf.train.Example.FromString(serialized)


def _decode_uint16_pngs(frames, key: str) -> np.ndarray:
    """16-bit PNG frames → (T, H, W, C) uint16, with TensorFlow's decoder (CPU)."""
    import tensorflow as tf

    if not frames:
        raise KeyError(f"example has no encoded frames for {key!r}")
    return np.stack([tf.io.decode_png(f, dtype=tf.uint16).numpy() for f in frames])


def _decode_range(encoded: np.ndarray, value_range: np.ndarray) -> np.ndarray:
    lo, hi = float(value_range[0]), float(value_range[1])
    return lo + encoded.astype(np.float32) / 65535.0 * (hi - lo)


def decode_flows(example: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """MOVi flows → ``forward`` (T, 2, H, W) displacement t → t+1 and ``backward`` (T, 2, H, W)
    displacement t → t−1, both (dx, dy) in pixels (channels first, as CONTRACTS). ``forward[-1]``
    and ``backward[0]`` have no partner frame and are meaningless."""
    meta = example["metadata"]
    fwd = _decode_range(example["forward_flow"], meta["forward_flow_range"])  # (T, H, W, 2) (d_row, d_col)
    bwd = -_decode_range(example["backward_flow"], meta["backward_flow_range"])
    forward = np.ascontiguousarray(fwd[..., ::-1].transpose(0, 3, 1, 2))
    backward = np.ascontiguousarray(bwd[..., ::-1].transpose(0, 3, 1, 2))
    return forward, backward
