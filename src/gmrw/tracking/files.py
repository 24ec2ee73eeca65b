"""Tracking a video file end to end: track its points (offline, online or dense) and write the
``.npz`` and the ``.mp4`` that ``gmrw-track`` promises. Outputs appear only once complete."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gmrw.tracking.frames import ResizedFrames
from gmrw.tracking.outputs import save_dense, save_tracks, write_dense_video, write_tracks_video
from gmrw.tracking.predictor import Predictor


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
    predictor: Predictor, source: ResizedFrames, queries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Feed the video to an online session frame by frame: (N, T, 2) tracks (NaN before each
    query's frame), (N, T) occluded, and the seconds each step took."""
    session = predictor.online()
    session.add_queries(queries)
    positions, occluded, seconds = [], [], []
    for frame in tqdm(source.original_frames(), total=source.num_frames, desc="gmrw online", unit="frame"):
        start = time.perf_counter()
        xy, occ = session.step(frame)
        seconds.append(time.perf_counter() - start)
        positions.append(xy)
        occluded.append(occ)
    return torch.stack(positions, dim=1), torch.stack(occluded, dim=1), seconds


def track_to_files(
    predictor: Predictor,
    source: ResizedFrames,
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
        frames = tqdm(source.original_frames(), total=source.num_frames, desc="drawing", unit="frame")
        if dense is not None:
            write_dense_video(mp4_path, frames, tracks, occluded, queries, dense, source.fps)
        else:
            write_tracks_video(mp4_path, frames, tracks, occluded, source.fps, trail=trail)
    if dense is not None:
        save_dense(npz_path, tracks, occluded, queries, dense, source.original_size, source.fps)
    else:
        save_tracks(npz_path, tracks, occluded, queries, source.original_size, source.fps)
    return TrackedFile(
        npz_path, mp4_path if draw else None, len(queries), source.num_frames, seconds, step_seconds
    )
