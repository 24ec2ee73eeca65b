"""Tracks on disk and on screen: the ``.npz`` files ``gmrw-track`` and ``gmrw-demo`` write, and their
videos.

Point tracks (``save_tracks``): ``tracks`` (N, T, 2) float32 (x, y), ``occluded`` (N, T) bool,
``queries`` (N, 3) float32 (t, y, x), ``size`` (H, W), ``fps``.

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
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from gmrw.video import write_video
from gmrw.viz.flow import flow_to_rgb
from gmrw.viz.tracks import render_dense, render_tracks


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


def start_colors(queries, size: tuple[int, int]) -> np.ndarray:
    """(N, 3) uint8 colours by where each point starts: hue from its direction from the frame's
    centre, saturation from its distance (the optical-flow colour wheel), so neighbours share a
    colour and the eye can follow regions."""
    q = torch.as_tensor(_numpy(queries), dtype=torch.float32)
    height, width = size
    offset = torch.stack((q[:, 2] - (width - 1) / 2, q[:, 1] - (height - 1) / 2))  # (2, N) (dx, dy)
    radius = 0.5 * math.hypot(height, width)
    return flow_to_rgb(offset[:, None, :], max_magnitude=radius)[0].numpy()


def write_tracks_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    tracks,
    occluded,
    fps: float,
    trail: int = 10,
    colors: np.ndarray | None = None,
) -> Path:
    """An mp4 of ``frames`` (the video's own, (H, W, 3) uint8) with point tracks drawn (markers,
    fading trails, hollow rings where occluded)."""
    tracks, occluded = _numpy(tracks), _numpy(occluded).astype(bool)
    return write_video(path, render_tracks(frames, tracks, occluded, colors, trail_length=trail), fps)


def write_dense_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    tracks,
    occluded,
    queries,
    stride: int,
    fps: float,
) -> Path:
    """An mp4 of ``frames`` with every visible dense point drawn as a dot coloured by its starting
    position (:func:`start_colors`)."""
    tracks, occluded = _numpy(tracks), _numpy(occluded).astype(bool)
    frames = iter(frames)
    first = next(frames)
    colors = start_colors(queries, first.shape[:2])
    dot = max(1, min(3, int(stride) - 1))

    def all_frames():
        yield first
        yield from frames

    return write_video(path, render_dense(all_frames(), tracks, occluded, colors, dot), fps)
