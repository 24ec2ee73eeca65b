"""TAP-Vid metrics: the per-video function (numpy) and a torchmetrics ``Metric`` for training/eval.

This package never imports the model: it scores any tracker's output.
"""

from gmrw.metrics.metric import TapVidMetric, video_id
from gmrw.metrics.tapvid import (
    FIRST_MODE_RULES,
    METRIC_NAMES,
    QUERY_MODES,
    THRESHOLDS,
    compute_tapvid_metrics,
    evaluation_mask,
    summarize,
)

__all__ = [
    "FIRST_MODE_RULES",
    "METRIC_NAMES",
    "QUERY_MODES",
    "THRESHOLDS",
    "TapVidMetric",
    "compute_tapvid_metrics",
    "evaluation_mask",
    "summarize",
    "video_id",
]
