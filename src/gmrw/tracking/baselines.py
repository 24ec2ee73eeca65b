"""Two reference trackers to put beside GMRW: standing still, and OpenCV's pyramidal Lucas–Kanade.

Same contract as :func:`gmrw.track` for one video: ``video (T, H, W, 3)`` uint8 or float in
[0, 255], ``queries (N, 3)`` as (t, y, x) pixels → ``tracks (N, T, 2)`` (x, y) pixels float32 and
``occluded (N, T)`` bool. The Lucas–Kanade tracker needs ``opencv-python-headless`` (a dev
dependency: ``pip install -e ".[dev]"``).
"""

from __future__ import annotations

import numpy as np
import torch

#: Forward–backward disagreement (px) above which Lucas–Kanade calls a point occluded.
LK_CONSISTENCY = 2.0


def identity_tracks(num_frames: int, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every point stays at its query position and is never occluded."""
    queries = torch.as_tensor(queries, dtype=torch.float32)
    xy = queries[:, [2, 1]]
    tracks = xy[:, None, :].expand(-1, num_frames, -1).clone()
    return tracks, torch.zeros(len(queries), num_frames, dtype=torch.bool)


def lucas_kanade_tracks(
    video: torch.Tensor | np.ndarray,
    queries: torch.Tensor | np.ndarray,
    window: int = 21,
    levels: int = 3,
    consistency: float = LK_CONSISTENCY,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chained pyramidal Lucas–Kanade (OpenCV) from each query frame, forward and backward in time.

    Each step tracks the points from frame t to its neighbour and back; a point whose round trip
    misses by more than ``consistency`` px, that OpenCV loses, or that leaves the frame is occluded
    in the new frame. Positions keep being propagated through occlusions (a lost point may be found
    again), as chained GMRW tracking does.
    """
    import cv2

    frames = np.asarray(torch.as_tensor(video).float().clamp(0, 255).round().to(torch.uint8))
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    queries = np.asarray(torch.as_tensor(queries, dtype=torch.float32))
    num_frames, height, width = len(frames), frames.shape[1], frames.shape[2]
    n = len(queries)
    tracks = np.zeros((n, num_frames, 2), dtype=np.float32)
    occluded = np.zeros((n, num_frames), dtype=bool)
    params = {
        "winSize": (window, window),
        "maxLevel": levels,
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    }

    def step(points: np.ndarray, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
        moved, status, _ = cv2.calcOpticalFlowPyrLK(gray[src], gray[dst], points[:, None], None, **params)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(gray[dst], gray[src], moved, None, **params)
        moved, back = moved[:, 0], back[:, 0]
        lost = (status[:, 0] == 0) | (status_back[:, 0] == 0)
        lost |= np.linalg.norm(back - points, axis=1) > consistency
        return moved, lost

    starts = np.round(queries[:, 0]).astype(int)
    for start in np.unique(starts):
        members = np.flatnonzero(starts == start)
        origin = queries[members][:, [2, 1]].astype(np.float32)
        tracks[members, start] = origin
        for direction in (1, -1):
            points = origin.copy()
            t = start
            while 0 <= t + direction < num_frames:
                points, lost = step(points, t, t + direction)
                t += direction
                tracks[members, t] = points
                occluded[members, t] = lost
    outside = (
        (tracks[..., 0] < 0)
        | (tracks[..., 1] < 0)
        | (tracks[..., 0] > width - 1)
        | (tracks[..., 1] > height - 1)
    )
    return torch.from_numpy(tracks), torch.from_numpy(occluded | outside)
