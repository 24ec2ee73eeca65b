"""TAP-Vid benchmark files as they are distributed, read into the evaluation contract's examples.

Every example follows docs/CONTRACTS.md: ``video`` (T, H, W, 3) uint8 at ``resolution``,
``query_points`` (N, 3) float32 (t, y, x) pixels, ``target_points`` (N, T, 2) float32 (x, y)
pixels, ``occluded`` (N, T) bool, ``name`` str.

Stored ``points`` are (x, y) in [0, 1]; queries are sampled as tapnet's ``sample_queries_first``
(each track's first visible frame; tracks never visible are dropped) or
``sample_queries_strided`` (every 5th frame, one query per track visible there). Coordinates are
scaled to pixels of the *output* resolution by multiplying by (W, H), as tapnet. The reference's
``validation_data.tsv`` holds pixel coordinates already (:func:`read_tsv_row`).
"""

from __future__ import annotations

import base64
import csv
import io
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmrw.data.queries import QUERY_STRIDE, tapvid_queries
from gmrw.video import resize_frames

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
        video = resize_frames(np.ascontiguousarray(video), tuple(resolution)).numpy()
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


def expected_layout(format: str) -> str:
    return {
        "tapvid_davis": "expected the file tapvid_davis.pkl (dict name → {video, points, occluded})",
        "tapvid_rgb_stacking": "expected the file tapvid_rgb_stacking.pkl (list of {video, points, occluded})",
        "tapvid_kinetics": "expected a folder of TAP-Vid-Kinetics shards 0000_of_0010.pkl … 0009_of_0010.pkl",
        "tapvid_kubric": "expected a TFDS data_dir with movi_e/256x256/<version>/ (as for data=kubric)",
        "tapvid_kubric_tsv": "expected the reference's validation_data.tsv (id, video, query_points, "
        "target_points, occluded; base64 arrays)",
    }[format]


def load_pickle(path: str | os.PathLike, expected: str = "") -> Any:
    """The object a pickle file holds.

    Raises:
        ValueError: the file is not a pickle; one line naming it, what it starts with, and (when
            given) what was ``expected`` there (:func:`expected_layout`).
    """
    with open(path, "rb") as f:
        try:
            return pickle.load(f)
        except OSError:
            raise
        except Exception as exc:  # junk makes the unpickler raise almost anything: one cause, not a pickle
            first = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
        f.seek(0)
        head = f.read(32)
    if head[:1] == pickle.PROTO:  # starts as a pickle of protocol 2+ does, then breaks
        message = f"{os.fspath(path)} is a damaged or truncated pickle ({why}): fetch it again"
    else:
        message = f"{os.fspath(path)} is not a pickle: it holds {describe_start(head)} ({why})"
    raise ValueError(message + (f"; {expected}" if expected else ""))


def describe_start(head: bytes) -> str:
    """What a file's first bytes look like, for a message: text, or bytes in hex."""
    if not head:
        return "nothing (an empty file)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return f"text starting {text[:24]!r}"
    return f"binary data starting {head[:8].hex(' ')}"


def kinetics_video_name(example: Any, stem: str, i: int) -> str:
    if isinstance(example, dict) and "video_id" in example:
        return str(example["video_id"])
    return f"{stem}_{i:04d}"


# ------------------------------------------------------------------------------ reference tsv


def tsv_row_offsets(path: Path) -> list[tuple[str, int]]:
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


def read_tsv_example(path: Path, offset: int, name: str, resolution) -> dict[str, Any]:
    row = read_tsv_row(path, offset)
    video = np.round((row["video"] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return pixel_example(name, video, row["query_points"], row["target_points"], row["occluded"], resolution)


def pixel_example(
    name: str, video: np.ndarray, queries: np.ndarray, targets: np.ndarray, occluded: np.ndarray, resolution
) -> dict[str, Any]:
    """An example whose coordinates are already pixels of ``video``, resized to ``resolution``
    (coordinates scaled with it)."""
    queries, targets = np.array(queries, np.float32), np.array(targets, np.float32)
    if resolution is not None and tuple(resolution) != video.shape[1:3]:
        sy, sx = resolution[0] / video.shape[1], resolution[1] / video.shape[2]
        video = resize_frames(np.ascontiguousarray(video), tuple(resolution)).numpy()
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
