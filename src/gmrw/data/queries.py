"""TAP-Vid query sampling from full tracks, shared by every TAP-Vid source.

``first``: one query per track, at its first visible frame. ``strided``: a query at every frame
``0, 5, 10, ...`` where the track is visible (frames outer, tracks inner, as tapnet orders them),
so a track can give several. Tracks never visible are dropped.
"""

from __future__ import annotations

import numpy as np

from gmrw.choices import QUERY_MODES, check_choice

#: TAP-Vid's strided sampling: a query every 5 frames where the point is visible.
QUERY_STRIDE = 5


def tapvid_queries(
    points: np.ndarray, occluded: np.ndarray, query_mode: str, stride: int = QUERY_STRIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Queries from tracks ``points (N, T, 2)`` (x, y) and ``occluded (N, T)``.

    Returns ``(query_points (M, 3) float32 (t, y, x), track_index (M,) int64)``: query ``m`` asks
    for track ``track_index[m]``.
    """
    check_choice(query_mode, QUERY_MODES, "query mode")
    visible = ~np.asarray(occluded, dtype=bool)
    if query_mode == "first":
        tracks = np.flatnonzero(visible.any(1))
        frames = visible[tracks].argmax(1) if len(tracks) else np.zeros(0, dtype=np.int64)
    else:
        pairs = [(t, n) for t in range(0, visible.shape[1], stride) for n in np.flatnonzero(visible[:, t])]
        frames = np.array([t for t, _ in pairs], dtype=np.int64)
        tracks = np.array([n for _, n in pairs], dtype=np.int64)
    if not len(tracks):
        return np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64)
    xy = np.asarray(points)[tracks, frames]
    queries = np.stack([frames.astype(np.float32), xy[:, 1], xy[:, 0]], axis=1).astype(np.float32)
    return queries, tracks.astype(np.int64)
