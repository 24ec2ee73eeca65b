"""Tracks on disk: the ``.npz`` layouts ``gmrw-track`` and ``gmrw-demo`` write, and tracking a video
file into them (and into a video of the tracks, drawn by :mod:`gmrw.viz.tracks`).

Point tracks (``save_tracks``): ``tracks`` (N, T, 2) float32 (x, y), ``occluded`` (N, T) bool,
``queries`` (N, 3) float32 (t, y, x), ``size`` (H, W), ``fps``; pixels of the video, pixel centres
at integers (``docs/conventions.md``).

Dense tracks (``save_dense``), compact for N = one point per few pixels: ``tracks`` (N, T, 2)
**float16** (x, y) — exact to 1/8 px below 256 px, 1/4 below 512, 1/2 below 1024 (float16 keeps 11
significant bits) —, ``visible_bits`` (N, ceil(T/8)) uint8, the visibility packed 8 frames a byte
(``np.unpackbits(visible_bits, axis=1, count=T)``), ``num_frames`` T, ``stride``, ``query_frame``,
``grid`` (rows, cols) — point ``n`` starts at (x, y) = (c · stride, r · stride) with
(r, c) = divmod(n, cols), or, where a mask thinned the grid, divmod(``cells[n]``, cols) —,
``size`` (H, W), ``fps``.
:func:`load_tracks` reads either kind back as float32 tracks and bool occluded.

Every file appears only once complete (written to a temporary name, then renamed).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gmrw.tracking.frames import FrameSource
from gmrw.tracking.predictor import Predictor
from gmrw.viz.tracks import write_dense_video, write_tracks_video


def _atomic_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:  # np.savez given a name would append ".npz"
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def save_tracks(
    path: str | os.PathLike,
    tracks,
    occluded,
    queries,
    size: tuple[int, int],
    fps: float | None = None,
) -> Path:
    """Point tracks (N, T, 2) (x, y), occluded (N, T) and their queries (N, 3) (t, y, x) as a
    ``.npz`` at exactly ``path``."""
    return _atomic_npz(
        path,
        tracks=_numpy(tracks).astype(np.float32),
        occluded=_numpy(occluded).astype(bool),
        queries=_numpy(queries).astype(np.float32),
        size=np.array(size),
        fps=np.array(float(fps or 0.0)),
    )


def dense_grid(height: int, width: int, stride: int) -> tuple[int, int]:
    """(rows, cols) of the dense grid of a ``height`` × ``width`` frame at ``stride``."""
    return math.ceil(height / stride), math.ceil(width / stride)


def save_dense(
    path: str | os.PathLike,
    tracks,
    occluded,
    queries,
    stride: int,
    size: tuple[int, int],
    fps: float | None = None,
) -> Path:
    """Dense tracks in the compact layout above (float16 tracks, visibility packed 8 frames a byte)."""
    tracks, occluded, queries = _numpy(tracks), _numpy(occluded).astype(bool), _numpy(queries)
    rows, cols = dense_grid(size[0], size[1], stride)
    cells = (np.round(queries[:, 1] / stride) * cols + np.round(queries[:, 2] / stride)).astype(np.int64)
    extra = {} if np.array_equal(cells, np.arange(rows * cols)) else {"cells": cells.astype(np.int32)}
    return _atomic_npz(
        path,
        tracks=tracks.astype(np.float16),
        visible_bits=np.packbits(~occluded, axis=1),
        num_frames=np.array(occluded.shape[1]),
        stride=np.array(int(stride)),
        query_frame=np.array(int(queries[0, 0]) if len(queries) else 0),
        grid=np.array((rows, cols)),
        size=np.array(size),
        fps=np.array(float(fps or 0.0)),
        **extra,
    )


def load_tracks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A file of :func:`save_tracks` or :func:`save_dense` → its arrays, with ``tracks`` as
    float32 (N, T, 2), ``occluded`` as bool (N, T) and ``queries`` (N, 3) (t, y, x) whichever
    layout it has."""
    with np.load(path, allow_pickle=False) as data:
        out = {key: data[key] for key in data.files}
    out["tracks"] = out["tracks"].astype(np.float32)
    if "visible_bits" in out:
        count = int(out["num_frames"])
        out["occluded"] = ~np.unpackbits(out.pop("visible_bits"), axis=1, count=count).astype(bool)
        rows, cols = (int(v) for v in out["grid"])
        cells = out.get("cells", np.arange(rows * cols))
        stride = float(out["stride"])
        r, c = np.divmod(cells, cols)
        out["queries"] = np.stack(
            (np.full(len(cells), float(out["query_frame"])), r * stride, c * stride), axis=-1
        ).astype(np.float32)
    return out


@dataclass(frozen=True)
class TrackedFile:
    """What :func:`track_to_files` wrote: the npz, the mp4 (None without one), how many points
    and frames, the tracking time, and, online, the seconds each frame's step took."""

    npz: Path
    mp4: Path | None
    points: int
    frames: int
    seconds: float
    step_seconds: list[float] | None = None


def track_online(
    predictor: Predictor, source: FrameSource, queries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Feed the video to an online session frame by frame: (N, T, 2) tracks (NaN before each
    query's frame), (N, T) occluded, and the seconds each step took."""
    session = predictor.online()
    session.add_queries(queries)
    positions, occluded, seconds = [], [], []
    for frame in tqdm(source.iter_frames(), total=source.num_frames, desc="gmrw online", unit="frame"):
        start = time.perf_counter()
        xy, occ = session.step(frame)
        seconds.append(time.perf_counter() - start)
        positions.append(xy)
        occluded.append(occ)
    return torch.stack(positions, dim=1), torch.stack(occluded, dim=1), seconds


def track_to_files(
    predictor: Predictor,
    source: FrameSource,
    queries: torch.Tensor,
    out_dir: str | Path,
    stem: str,
    dense: int | None = None,
    online: bool = False,
    trail: int = 10,
    draw: bool = True,
) -> TrackedFile:
    """Track ``queries`` (N, 3) (t, y, x) in the video's pixels through ``source`` (from
    :meth:`Predictor.open`) and write ``<out_dir>/<stem>.tracks.{npz,mp4}``; with ``dense`` (the
    stride the queries were made with), ``<stem>.dense.{npz,mp4}``, the compact layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = "dense" if dense is not None else "tracks"
    npz_path, mp4_path = out_dir / f"{stem}.{kind}.npz", out_dir / f"{stem}.{kind}.mp4"
    start = time.perf_counter()
    step_seconds = None
    if online:
        tracks, occluded, step_seconds = track_online(predictor, source, queries)
    else:
        tracks, occluded = predictor(source, queries=queries)
    seconds = time.perf_counter() - start

    if draw:
        frames = tqdm(source.iter_frames(), total=source.num_frames, desc="drawing", unit="frame")
        if dense is not None:
            write_dense_video(mp4_path, frames, tracks, occluded, queries, dense, source.fps)
        else:
            write_tracks_video(mp4_path, frames, tracks, occluded, source.fps, trail=trail)
    if dense is not None:
        save_dense(npz_path, tracks, occluded, queries, dense, source.size, source.fps)
    else:
        save_tracks(npz_path, tracks, occluded, queries, source.size, source.fps)
    return TrackedFile(
        npz_path, mp4_path if draw else None, len(queries), source.num_frames, seconds, step_seconds
    )
