"""Ground truth for real footage: corners that a strict forward–backward Lucas–Kanade verifies.

Real footage has no annotated tracks, so the targets are the (point, frame) pairs where OpenCV's
pyramidal Lucas–Kanade is trustworthy by its own strictest checks. On a segment's first frame
(the query frame) Shi–Tomasi corners are picked, spread over the frame by a minimum distance and
kept :attr:`VerifyRules.margin` px from the border. Each is tracked frame to frame (chained), and
it stays verified at frame t only while every step up to t passes all of:

1. OpenCV found the point in both directions (status 1);
2. the step's forward–backward round trip (t-1 → t → t-1) closes within ``round_trip`` px;
3. the chain's full round trip (query frame → t, then t → query frame, chained back) closes within
   ``round_trip`` px of the query point, so drift that each step hides is caught;
4. Lucas–Kanade's own error (mean absolute grey difference between the two windows) is at most
   ``max_error`` grey levels;
5. the point stays ``margin`` px inside the frame (a full window).

A point fails for good at its first failed step (its later positions hang on that one). A point
verified in no frame after the query is dropped; at most ``points`` of the others are kept, drawn
with a fixed seed. Unverified frames are marked occluded: they are not scored, so of the TAP-Vid
metrics only the position accuracy (< δ, on verified frames) means anything here.

By construction these points are the ones Lucas–Kanade tracks well: a benchmark on them flatters
Lucas–Kanade, which is why it is not scored as a competitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VerifyRules:
    """How targets are chosen and verified (see the module docstring)."""

    corners: int = 300  # Shi–Tomasi corners looked for on the query frame
    quality: float = 0.01  # Shi–Tomasi quality level, relative to the frame's best corner
    spacing: float = 1 / 24  # minimum distance between corners, as a fraction of the short side
    window: int = 21  # Lucas–Kanade window (px)
    levels: int = 3  # Lucas–Kanade pyramid levels above the full size
    round_trip: float = 0.5  # px, per step and for the whole chain
    max_error: float = 8.0  # grey levels, Lucas–Kanade's mean absolute window difference
    margin: int = 10  # px from the border: half the window
    points: int = 64  # targets kept per segment at most


def _lucas_kanade(rules: VerifyRules):
    import cv2

    params = {
        "winSize": (rules.window, rules.window),
        "maxLevel": rules.levels,
        # Converge far below the round-trip threshold so the check measures the data, not the solver.
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001),
    }

    def step(src: np.ndarray, dst: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(K, 2) float32 points of ``src`` → their (K, 2) positions in ``dst``, found (K,), error (K,)."""
        if len(xy) == 0:
            return xy, np.zeros(0, bool), np.zeros(0, np.float32)
        moved, status, error = cv2.calcOpticalFlowPyrLK(src, dst, xy[:, None], None, **params)
        return moved[:, 0], status[:, 0].astype(bool), error[:, 0]

    return step


def pick_corners(first: np.ndarray, rules: VerifyRules) -> np.ndarray:
    """Shi–Tomasi corners of a (H, W) uint8 frame, ``margin`` px inside it → (N, 2) float32 (x, y)."""
    import cv2

    height, width = first.shape
    mask = np.zeros_like(first)
    mask[rules.margin : height - rules.margin, rules.margin : width - rules.margin] = 255
    corners = cv2.goodFeaturesToTrack(
        first,
        maxCorners=rules.corners,
        qualityLevel=rules.quality,
        minDistance=max(1.0, rules.spacing * min(height, width)),
        mask=mask,
        blockSize=7,
    )
    return np.zeros((0, 2), np.float32) if corners is None else corners[:, 0].astype(np.float32)


def verify(grey: np.ndarray, start: np.ndarray, rules: VerifyRules) -> tuple[np.ndarray, np.ndarray]:
    """Chain ``start`` (N, 2) (x, y) on frame 0 of ``grey`` (T, H, W) uint8 through the frames.

    Returns tracks (N, T, 2) float32 (x, y) and verified (N, T) bool (True at frame 0), the
    rules of the module docstring applied.
    """
    step = _lucas_kanade(rules)
    num_frames, height, width = grey.shape
    n = len(start)
    tracks = np.zeros((n, num_frames, 2), np.float32)
    passed = np.zeros((n, num_frames), bool)
    tracks[:, 0], passed[:, 0] = start, True
    m = rules.margin
    for t in range(1, num_frames):
        moved, found, error = step(grey[t - 1], grey[t], tracks[:, t - 1])
        back, found_back, _ = step(grey[t], grey[t - 1], moved)
        tracks[:, t] = moved
        x, y = moved[:, 0], moved[:, 1]
        passed[:, t] = (
            found
            & found_back
            & (np.linalg.norm(back - tracks[:, t - 1], axis=1) <= rules.round_trip)
            & (error <= rules.max_error)
            & (x >= m)
            & (y >= m)
            & (x <= width - 1 - m)
            & (y <= height - 1 - m)
        )
    passed &= _chain_returns(grey, tracks, step, rules.round_trip)
    return tracks, np.logical_and.accumulate(passed, axis=1)


def _chain_returns(grey: np.ndarray, tracks: np.ndarray, step, tolerance: float) -> np.ndarray:
    """(N, T) bool: does the chain from frame t back to frame 0 land within ``tolerance`` px of the
    query point? All the chains are walked together: going from frame u to u-1, every chain that
    started at a frame ≥ u takes that step in one Lucas–Kanade call."""
    n, num_frames, _ = tracks.shape
    returns = np.ones((n, num_frames), bool)
    xy = np.zeros((0, 2), np.float32)
    owner = np.zeros((0, 2), int)  # (point, frame the chain started from)
    alive = np.zeros(0, bool)
    for u in range(num_frames - 1, 0, -1):
        xy = np.concatenate([xy, tracks[:, u]])
        owner = np.concatenate([owner, np.stack([np.arange(n), np.full(n, u)], 1)])
        alive = np.concatenate([alive, np.ones(n, bool)])
        xy, found, _ = step(grey[u], grey[u - 1], np.ascontiguousarray(xy, np.float32))
        alive &= found
    miss = np.linalg.norm(xy - tracks[owner[:, 0], 0], axis=1)
    returns[owner[:, 0], owner[:, 1]] = alive & (miss <= tolerance)
    return returns


def verified_example(frames: np.ndarray, grey: np.ndarray, rules: VerifyRules, seed: int, name: str) -> dict:
    """A TAP-Vid example ("first" query mode, queries on frame 0) of verified targets on a segment.

    frames (T, H, W, 3) uint8 RGB and grey (T, H, W) uint8 of the same segment → dict with
    ``video`` (T, H, W, 3) uint8, ``query_points`` (N, 3) float32 (t, y, x), ``target_points``
    (N, T, 2) float32 (x, y), ``occluded`` (N, T) bool (True: not verified), ``name``; N may be 0.
    """
    start = pick_corners(grey[0], rules)
    tracks, verified = verify(grey, start, rules)
    keep = np.flatnonzero(verified[:, 1:].any(axis=1))
    if len(keep) > rules.points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, rules.points, replace=False))
    queries = np.zeros((len(keep), 3), np.float32)
    queries[:, 1], queries[:, 2] = start[keep, 1], start[keep, 0]
    return {
        "video": frames,
        "query_points": queries,
        "target_points": tracks[keep],
        "occluded": ~verified[keep],
        "name": name,
    }
