"""TAP-Vid metrics (occlusion accuracy, < δ^x, Jaccard), per video.

Definitions follow today's tapnet (``tapnet/tapvid/evaluation_datasets.py``):

* the query frame itself is never scored; in ``strided`` mode every other frame is, in ``first``
  mode only the frames *after* the query frame (all earlier frames are known to be occluded);
* ``pts_within_x``: among frames visible in the ground truth, the fraction predicted strictly
  within ``x`` px (``d² < x²``), whatever the predicted occlusion;
* ``jaccard_x``: true positives / (ground-truth visible + false positives), where a true positive
  is predicted visible, visible and within ``x`` px, and a false positive is predicted visible but
  occluded or farther than ``x`` px;
* ``occlusion_accuracy``: fraction of scored frames whose predicted occlusion is right, per video.

The paper's evaluation used an older copy of this function, which differs in two ways (see
co-tracker issue 20). Its occlusion accuracy divides each video's count by the whole *batch's*
number of scored frames (harmless with batch size 1, as the paper ran); here it is always per
video. And its ``first`` mode scored every frame but the query frame, dropping instead the tracks
before the first track visible anywhere in the video. That rule stays available as
``first_mode_rule="reference_2022"`` to reproduce the paper's protocol; the default is
``"tapnet"``. Every result records which rule it used.
"""

from __future__ import annotations

import numpy as np

from gmrw.choices import FIRST_MODE_RULES, QUERY_MODES, check_choice

THRESHOLDS = (1, 2, 4, 8, 16)
METRIC_NAMES = (
    "occlusion_accuracy",
    *(f"pts_within_{x}" for x in THRESHOLDS),
    *(f"jaccard_{x}" for x in THRESHOLDS),
    "average_jaccard",
    "average_pts_within_thresh",
)


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def evaluation_mask(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    query_mode: str,
    first_mode_rule: str = "tapnet",
) -> np.ndarray:
    """(B, N, T) bool: which (track, frame) entries are scored."""
    check_choice(query_mode, QUERY_MODES, "query mode")
    check_choice(first_mode_rule, FIRST_MODE_RULES, "first_mode_rule")
    num_frames = gt_occluded.shape[-1]
    frames = np.arange(num_frames)
    query_frame = np.round(query_points[..., 0]).astype(np.int64)[..., None]  # (B, N, 1)
    if query_mode == "first" and first_mode_rule == "tapnet":
        return frames > query_frame
    mask = frames != query_frame
    if query_mode == "first":
        # The 2022 rule: drop every track listed before the first track visible anywhere.
        for i in range(gt_occluded.shape[0]):
            tracks_seen = np.nonzero(~gt_occluded[i].astype(bool))[0]
            if len(tracks_seen):
                mask[i, : tracks_seen[0]] = False
    return mask


def compute_tapvid_metrics(
    query_points,
    gt_occluded,
    gt_tracks,
    pred_occluded,
    pred_tracks,
    query_mode: str,
    first_mode_rule: str = "tapnet",
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics of a batch of videos, one value per video.

    Args:
        query_points: (B, N, 3) (t, y, x) pixels.
        gt_occluded: (B, N, T) bool.
        gt_tracks: (B, N, T, 2) (x, y) pixels.
        pred_occluded: (B, N, T) bool.
        pred_tracks: (B, N, T, 2) (x, y) pixels.
        query_mode: ``"first"`` or ``"strided"`` (how the queries were sampled).
        first_mode_rule: ``"tapnet"`` (today's; score only frames after the query frame) or
            ``"reference_2022"`` (the paper's; see the module docstring). Only used in ``first`` mode.

    Returns:
        dict name → (B,) float64 array (numpy) for each of :data:`METRIC_NAMES`. Coordinates are
        taken as given; the benchmark convention is 256×256 frames. A video with nothing to score
        gives NaN (as tapnet).
    """
    query_points = _numpy(query_points).astype(np.float64)
    gt_occluded = _numpy(gt_occluded).astype(bool)
    pred_occluded = _numpy(pred_occluded).astype(bool)
    gt_tracks = _numpy(gt_tracks).astype(np.float64)
    pred_tracks = _numpy(pred_tracks).astype(np.float64)
    if gt_tracks.ndim != 4 or gt_tracks.shape != pred_tracks.shape:
        raise ValueError(
            f"gt_tracks and pred_tracks must both be (B, N, T, 2); got {gt_tracks.shape} and {pred_tracks.shape}"
        )
    if gt_occluded.shape != gt_tracks.shape[:3] or pred_occluded.shape != gt_tracks.shape[:3]:
        raise ValueError(
            f"occlusion arrays must be (B, N, T) = {gt_tracks.shape[:3]}; got {gt_occluded.shape} "
            f"and {pred_occluded.shape}"
        )
    if query_points.shape != (*gt_tracks.shape[:2], 3):
        raise ValueError(f"query_points must be (B, N, 3); got {query_points.shape}")

    scored = evaluation_mask(query_points, gt_occluded, query_mode, first_mode_rule)
    axes = (1, 2)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["occlusion_accuracy"] = np.sum((pred_occluded == gt_occluded) & scored, axis=axes) / np.sum(
            scored, axis=axes
        )
        visible = ~gt_occluded
        pred_visible = ~pred_occluded
        gt_positives = np.sum(visible & scored, axis=axes)
        distance2 = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
        within_all, jaccard_all = [], []
        for x in THRESHOLDS:
            within = distance2 < np.square(x)
            correct = within & visible
            within_frac = np.sum(correct & scored, axis=axes) / gt_positives
            true_positives = np.sum(correct & pred_visible & scored, axis=axes)
            false_positives = np.sum(((~visible) | (~within)) & pred_visible & scored, axis=axes)
            jaccard = true_positives / (gt_positives + false_positives)
            out[f"pts_within_{x}"] = within_frac
            out[f"jaccard_{x}"] = jaccard
            within_all.append(within_frac)
            jaccard_all.append(jaccard)
        out["average_jaccard"] = np.mean(np.stack(jaccard_all, axis=1), axis=1)
        out["average_pts_within_thresh"] = np.mean(np.stack(within_all, axis=1), axis=1)
    return {name: out[name] for name in METRIC_NAMES}
