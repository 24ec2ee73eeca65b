"""Drawing point tracks on video frames, and writing the result as an mp4.

Plain numpy rasterisation (anti-aliased discs, rings and line segments), so nothing beyond
matplotlib's colour maps is needed; imageio + imageio-ffmpeg write the mp4
(:func:`write_tracks_video`, :func:`write_dense_video`).

Conventions (``docs/conventions.md``): frames are ``(H, W, 3)`` uint8; tracks are ``(N, T, 2)`` as
(x, y) pixels of those frames with pixel centres at integer coordinates; ``occluded`` is
``(N, T)`` bool. A visible point is a filled disc with a dark rim, an
occluded one a hollow ring; each track keeps one colour and leaves a fading trail over its last
``trail_length`` frames (segments are drawn only between visible positions).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from gmrw.video import write_video
from gmrw.viz.flow import flow_to_rgb

_RIM = np.array([20, 20, 20], dtype=np.float32)


def track_colors(num_tracks: int, cmap: str = "gist_rainbow") -> np.ndarray:
    """One distinct colour per track along a matplotlib colour map: ``(N, 3)`` uint8."""
    from matplotlib import colormaps

    if num_tracks <= 0:
        return np.zeros((0, 3), dtype=np.uint8)
    positions = (np.arange(num_tracks) + 0.5) / num_tracks
    rgba = colormaps[cmap](positions)
    return (rgba[:, :3] * 255).round().astype(np.uint8)


def _blend(
    image: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    color: np.ndarray,
    alpha: np.ndarray,
    strongest: bool,
) -> None:
    """image[rows, cols] ← (1 - alpha) image + alpha color, in place (image float32 (H, W, 3)).

    Where a pixel is listed several times the last entry wins; with ``strongest`` the entries
    are first sorted by alpha, so the best-covering one wins (a line made of overlapping stamps
    would otherwise look dotted).
    """
    h, w = image.shape[:2]
    keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w) & (alpha > 0)
    rows, cols, color, alpha = rows[keep], cols[keep], color[keep], alpha[keep]
    if strongest:
        order = np.argsort(alpha, kind="stable")
        rows, cols, color, alpha = rows[order], cols[order], color[order], alpha[order]
    alpha = alpha[:, None]
    image[rows, cols] = image[rows, cols] * (1 - alpha) + color * alpha


def draw_discs(
    image: np.ndarray,
    centers: np.ndarray,
    colors: np.ndarray,
    radius: float,
    hollow: np.ndarray | None = None,
    alpha: np.ndarray | float = 1.0,
    ring_width: float = 1.5,
    rim: bool = True,
    strongest: bool = False,
) -> None:
    """Draw discs (or rings where ``hollow``) at ``centers`` (M, 2) (x, y) into ``image``
    (H, W, 3) float32, in place, anti-aliased over one pixel. Discs later in the list are on top
    (with ``strongest``, the disc covering a pixel most is, instead)."""
    m = len(centers)
    if m == 0:
        return
    hollow = np.zeros(m, dtype=bool) if hollow is None else np.asarray(hollow, dtype=bool)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float32), (m,))
    reach = int(np.ceil(radius + 1.5))
    offsets = np.arange(-reach, reach + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    base = np.round(centers).astype(np.int64)  # (M, 2) nearest pixel (x, y)
    cols = base[:, None, None, 0] + dx  # (M, K, K)
    rows = base[:, None, None, 1] + dy
    dist = np.hypot(cols - centers[:, None, None, 0], rows - centers[:, None, None, 1])
    if rim:
        # A dark rim one pixel wider than the disc keeps markers readable on any background.
        cover = np.clip(radius + 1.5 - dist, 0, 1) * ~hollow[:, None, None]
        a = (cover * alpha[:, None, None]).reshape(m, -1)
        _blend(
            image,
            rows.reshape(m, -1).ravel(),
            cols.reshape(m, -1).ravel(),
            np.broadcast_to(_RIM, (a.size, 3)),
            a.ravel(),
            strongest,
        )
    filled = np.clip(radius + 0.5 - dist, 0, 1)
    ring = np.clip(ring_width / 2 + 0.5 - np.abs(dist - (radius - ring_width / 2)), 0, 1)
    cover = np.where(hollow[:, None, None], ring, filled) * alpha[:, None, None]
    color = np.repeat(colors.astype(np.float32), cover[0].size, axis=0)
    _blend(image, rows.ravel(), cols.ravel(), color, cover.ravel(), strongest)


def draw_segments(
    image: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    colors: np.ndarray,
    width: float = 1.5,
    alpha: np.ndarray | float = 1.0,
) -> None:
    """Draw line segments ``starts`` → ``ends`` (M, 2) (x, y) into ``image`` (H, W, 3) float32,
    in place, by stamping small discs every half pixel along each segment."""
    m = len(starts)
    if m == 0:
        return
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float32), (m,))
    length = np.hypot(*(ends - starts).T)
    # A segment longer than the frame's diagonal is clipped to it: nothing more can be visible.
    limit = np.hypot(*image.shape[:2])
    steps = np.clip(np.ceil(np.minimum(length, limit) * 2), 1, None).astype(np.int64)
    owner = np.repeat(np.arange(m), steps + 1)
    first = np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)
    fraction = (np.arange(len(owner)) - first) / steps[owner]
    points = starts[owner] + (ends[owner] - starts[owner]) * fraction[:, None]
    draw_discs(image, points, colors[owner], radius=width / 2, alpha=alpha[owner], rim=False, strongest=True)


def draw_tracks(
    frame: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    t: int,
    colors: np.ndarray | None = None,
    trail_length: int = 10,
    radius: float | None = None,
    line_width: float | None = None,
) -> np.ndarray:
    """Frame ``t`` with every track's marker and trail drawn on it.

    Args:
        frame: (H, W, 3) uint8 (or float in [0, 255]).
        tracks: (N, T, 2) (x, y) pixels of this frame.
        occluded: (N, T) bool; an occluded point is drawn as a hollow ring.
        t: which frame of the tracks this is.
        colors: (N, 3) uint8 (default :func:`track_colors`).
        trail_length: frames of history drawn behind each marker (0: none).
        radius / line_width: marker radius and trail width in pixels (default: scaled to the frame).

    Returns:
        (H, W, 3) uint8, a new array.
    """
    tracks = np.asarray(tracks, dtype=np.float32)
    occluded = np.asarray(occluded, dtype=bool)
    n = tracks.shape[0]
    if tracks.ndim != 3 or tracks.shape[-1] != 2 or occluded.shape != tracks.shape[:2]:
        raise ValueError(
            f"tracks must be (N, T, 2) and occluded (N, T); got {tracks.shape}, {occluded.shape}"
        )
    colors = track_colors(n) if colors is None else np.asarray(colors)
    short_side = min(frame.shape[:2])
    radius = max(2.0, short_side / 90) if radius is None else radius
    line_width = max(1.0, short_side / 240) if line_width is None else line_width
    image = np.asarray(frame, dtype=np.float32).copy()
    finite = np.isfinite(tracks).all(-1)

    start = max(0, t - trail_length)
    for s in range(start, t):  # oldest segments first, so newer ones are drawn on top
        ok = finite[:, s] & finite[:, s + 1] & ~occluded[:, s] & ~occluded[:, s + 1]
        if ok.any():
            fade = (s - start + 1) / (t - start + 1)
            draw_segments(image, tracks[ok, s], tracks[ok, s + 1], colors[ok], line_width, alpha=0.9 * fade)
    here = finite[:, t]
    # Occluded rings under visible discs: the visible points are what the eye should find first.
    order = np.argsort(~occluded[:, t], kind="stable")
    order = order[here[order]]
    draw_discs(image, tracks[order, t], colors[order], radius, hollow=occluded[order, t])
    return np.clip(image.round(), 0, 255).astype(np.uint8)


def render_tracks(
    frames: Iterable[np.ndarray],
    tracks: np.ndarray,
    occluded: np.ndarray,
    colors: np.ndarray | None = None,
    trail_length: int = 10,
    radius: float | None = None,
    line_width: float | None = None,
) -> Iterator[np.ndarray]:
    """Frames with tracks drawn, one at a time (frames can be a generator over a long video)."""
    colors = track_colors(len(tracks)) if colors is None else colors
    for t, frame in enumerate(frames):
        yield draw_tracks(frame, tracks, occluded, t, colors, trail_length, radius, line_width)


def draw_dots(
    frame: np.ndarray, points: np.ndarray, colors: np.ndarray, size: int = 1, alpha: float = 0.85
) -> np.ndarray:
    """``frame`` (H, W, 3) with a ``size`` × ``size`` square dot of ``colors[i]`` (N, 3) at each
    of ``points`` (N, 2) (x, y) (nearest pixel; later points on top): for thousands of points,
    where discs and trails would be a blur. Returns a new (H, W, 3) uint8 array."""
    image = np.asarray(frame, dtype=np.float32).copy()
    h, w = image.shape[:2]
    finite = np.isfinite(points).all(-1)
    base = np.round(points[finite]).astype(np.int64) - (size - 1) // 2
    color = np.asarray(colors, dtype=np.float32)[finite]
    for dy in range(size):
        for dx in range(size):
            cols, rows = base[:, 0] + dx, base[:, 1] + dy
            keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            r, c = rows[keep], cols[keep]
            image[r, c] = image[r, c] * (1 - alpha) + color[keep] * alpha
    return np.clip(image.round(), 0, 255).astype(np.uint8)


def render_dense(
    frames: Iterable[np.ndarray],
    tracks: np.ndarray,
    occluded: np.ndarray,
    colors: np.ndarray,
    dot_size: int = 1,
) -> Iterator[np.ndarray]:
    """Frames with every visible point of dense tracks (N, T, 2) / (N, T) drawn as a dot, one at
    a time."""
    for t, frame in enumerate(frames):
        seen = ~occluded[:, t]
        yield draw_dots(frame, tracks[seen, t], colors[seen], dot_size)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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
