"""Tiny TAP-Vid files: ``tapvid_davis.pkl`` (dict), ``tapvid_rgb_stacking.pkl`` (list), a
TAP-Vid-Kinetics shard ``0000_of_0010.pkl`` (list, JPEG-encoded frames) and the reference's
``validation_data.tsv`` (base64 float32/bool arrays)."""

from __future__ import annotations

import base64
import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np

from gmrw.datatools.tiny.videos import textured_video


def tapvid_tracks(num_points: int, num_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth tracks in [0, 1] (x, y) (N, T, 2) float32 and occlusion (N, T) bool.

    Point 0 is occluded in its first two frames (a late first-visible frame), point 1 is never
    visible (so ``first`` sampling must drop it).
    """
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.1, 0.9, (num_points, 1, 2))
    vel = rng.uniform(-0.01, 0.01, (num_points, 1, 2))
    points = (start + vel * np.arange(num_frames)[None, :, None]).clip(0, 1).astype(np.float32)
    occluded = rng.random((num_points, num_frames)) < 0.2
    if num_points > 0:
        occluded[0, :2] = True
        occluded[0, 2:] = False
    if num_points > 1:
        occluded[1] = True
    return points, occluded


def _jpeg_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tapvid_pickle(
    path: str | os.PathLike,
    kind: str = "davis",
    num_videos: int = 3,
    num_frames: int = 8,
    size: tuple[int, int] = (40, 48),
    num_points: int = 6,
    seed: int = 0,
) -> Path:
    """Write a TAP-Vid pickle: ``kind`` is ``davis`` (dict name → example, uint8 video),
    ``rgb_stacking`` (list, uint8 video) or ``kinetics`` (list, JPEG-bytes frames; name the file
    ``NNNN_of_0010.pkl``). Examples hold ``video``, ``points`` (N, T, 2) in [0, 1] and ``occluded``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    examples = []
    for v in range(num_videos):
        video = textured_video(num_frames, size[0], size[1], seed=seed + v)
        points, occluded = tapvid_tracks(num_points, num_frames, seed=seed + v)
        example = {"points": points, "occluded": occluded}
        if kind == "kinetics":
            example["video"] = [_jpeg_bytes(f) for f in video]
            example["video_id"] = f"yt{seed + v:05d}"
        else:
            example["video"] = video
        examples.append(example)
    if kind == "davis":
        data: object = {f"video{v}": ex for v, ex in enumerate(examples)}
    elif kind in ("rgb_stacking", "kinetics"):
        data = examples
    else:
        raise ValueError(f"unknown TAP-Vid pickle kind {kind!r}: davis, rgb_stacking or kinetics")
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def write_kubric_tsv(
    path: str | os.PathLike,
    num_videos: int = 2,
    num_frames: int = 6,
    size: int = 32,
    num_points: int = 8,
    seed: int = 0,
) -> Path:
    """Write the reference's ``validation_data.tsv`` layout: columns id, video, query_points,
    target_points, occluded; arrays base64 of float32 video (1, T, S, S, 3) in [-1, 1], float32
    queries (1, N, 3) (t, y, x) px, float32 targets (1, N, T, 2) (x, y) px, bool occlusion (1, N, T)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def b64(a: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")

    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        for i in range(num_videos):
            video = textured_video(num_frames, size, size, seed=seed + i).astype(np.float32) / 127.5 - 1.0
            points, occluded = tapvid_tracks(num_points, num_frames, seed=seed + i)
            occluded[1] = False  # every Kubric query is visible at its own frame
            targets = points * size
            qt = np.array([np.flatnonzero(~occ)[0] for occ in occluded])
            queries = np.stack(
                [qt, targets[np.arange(num_points), qt, 1], targets[np.arange(num_points), qt, 0]], -1
            )
            writer.writerow(
                [
                    str(i),
                    b64(video[None]),
                    b64(queries[None].astype(np.float32)),
                    b64(targets[None].astype(np.float32)),
                    b64(occluded[None].astype(bool)),
                ]
            )
    return path
