"""TAP-Vid query sampling from full tracks, shared by every TAP-Vid source, and the TAP-Vid
ground truth of a rendered scene (:class:`SceneVideo`).

``first``: one query per track, at its first visible frame. ``strided``: a query at every frame
``0, 5, 10, ...`` where the track is visible (frames outer, tracks inner, as tapnet orders them),
so a track can give several. Tracks never visible are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gmrw.choices import QUERY_MODES, check_choice
from gmrw.data.scenes import Scene

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


@dataclass(frozen=True)
class SceneVideo:
    """A rendered scene's video with exact ground truth, as TAP-Vid queries.

    video ``(T, H, W, 3)`` uint8; query_points ``(N, 3)`` float32 (t, y, x); target_points
    ``(N, T, 2)`` float32 (x, y); occluded ``(N, T)`` bool; point_layers ``(N,)`` int64 (0 =
    background, higher = object in z-order); scene: the :class:`~gmrw.data.scenes.Scene`.
    """

    video: torch.Tensor
    query_points: torch.Tensor
    target_points: torch.Tensor
    occluded: torch.Tensor
    point_layers: torch.Tensor
    scene: Scene

    def example(self, name: str) -> dict[str, Any]:
        """The TAP-Vid example of docs/CONTRACTS.md."""
        return {
            "video": self.video,
            "query_points": self.query_points,
            "target_points": self.target_points,
            "occluded": self.occluded,
            "name": name,
        }


def scene_ground_truth(
    scene: Scene, layers: np.ndarray, uv: np.ndarray, times: Sequence[float], query_mode: str
) -> dict[str, torch.Tensor]:
    """The exact tracks of points ``uv`` of ``layers`` through ``scene`` at ``times``, as the
    query_points / target_points / occluded / point_layers fields of a :class:`SceneVideo` (a
    track is repeated for each query strided mode makes of it)."""
    tracks, occluded = scene.tracks(layers, uv, times)
    queries, index = tapvid_queries(tracks, occluded, query_mode)
    return {
        "query_points": torch.from_numpy(queries).float(),
        "target_points": torch.from_numpy(tracks[index]).float(),
        "occluded": torch.from_numpy(occluded[index]),
        "point_layers": torch.from_numpy(layers[index]),
    }
