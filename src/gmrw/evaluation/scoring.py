"""Track a batch of TAP-Vid examples and score it: the step validation and evaluation share."""

from __future__ import annotations

from typing import Any

import torch

from gmrw.metrics import TapVidMetric
from gmrw.tracking import track


def track_and_score(
    model: torch.nn.Module, batch: dict, metric: TapVidMetric, **tracking: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks ``batch``'s queries with :func:`gmrw.track` and adds the batch's scores to ``metric``.

    Args:
        batch: TAP-Vid examples (docs/CONTRACTS.md): ``video`` (B, T, H, W, 3) uint8,
            ``query_points`` (B, N, 3) (t, y, x) pixels, ``target_points`` (B, N, T, 2) (x, y)
            pixels, ``occluded`` (B, N, T) bool.
        tracking: :func:`gmrw.track` keyword arguments: options (those left out are the model's
            own defaults) or ``options=`` resolved ones, ``pair_batch_size``, ...

    Returns:
        tracks (B, N, T, 2) (x, y) pixels and occluded (B, N, T) bool, as :func:`gmrw.track`.
    """
    tracks, occluded = track(model, batch["video"], batch["query_points"], **tracking)
    metric.update(batch["query_points"], batch["occluded"], batch["target_points"], occluded, tracks)
    return tracks, occluded
