"""TAP-Vid metrics: the per-video function (numpy) and a torchmetrics ``Metric`` for training/eval.

This package never imports the model: it scores any tracker's output.
"""

from gmrw.metrics.metric import TapVidMetric, video_id
from gmrw.metrics.tapvid import METRIC_NAMES, THRESHOLDS, compute_tapvid_metrics, evaluation_mask

__all__ = [
    "METRIC_NAMES",
    "THRESHOLDS",
    "TapVidMetric",
    "compute_tapvid_metrics",
    "evaluation_mask",
    "video_id",
]
