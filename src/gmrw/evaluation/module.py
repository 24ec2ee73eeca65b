"""The LightningModule ``gmrw-eval`` runs ``Trainer.test`` with: every video tracked and scored
once, on any number of ranks, and one report row per video."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch

from gmrw.evaluation.scoring import track_and_score
from gmrw.metrics import METRIC_NAMES, TapVidMetric
from gmrw.tracking import TrackingOptions


class TapVidEvaluation(pl.LightningModule):
    """Tracks each TAP-Vid video of a test loop and accumulates its scores.

    Batches follow docs/CONTRACTS.md (batch size 1): ``video`` (1, T, H, W, 3) uint8,
    ``query_points`` (1, N, 3) (t, y, x) pixels, ``target_points`` (1, N, T, 2) (x, y) pixels,
    ``occluded`` (1, N, T) bool, ``name`` [str]. After the loop, :attr:`result` holds
    ``{"means": {...}, "per_video": [...]}`` on every rank.

    Args:
        model: a GMRW (anything :func:`gmrw.track` accepts).
        options: how every video is tracked, resolved once for the whole benchmark
            (:func:`gmrw.tracking.resolve_options`).
        query_mode / first_mode_rule: :class:`gmrw.metrics.TapVidMetric` options.
        pair_batch_size: frame pairs per model call (memory vs. speed).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        options: TrackingOptions,
        query_mode: str,
        first_mode_rule: str = "tapnet",
        pair_batch_size: int = 8,
    ):
        super().__init__()
        self.model = model
        self.options = options
        self.pair_batch_size = int(pair_batch_size)
        self.metric = TapVidMetric(query_mode=query_mode, first_mode_rule=first_mode_rule)
        self.videos: list[dict[str, Any]] = []  # this rank's (name, size, seconds) per video
        self.result: dict[str, Any] | None = None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        start = time.perf_counter()
        track_and_score(
            self.model, batch, self.metric, options=self.options, pair_batch_size=self.pair_batch_size
        )
        if batch["video"].is_cuda:
            torch.cuda.synchronize(batch["video"].device)
        _, t, h, w, _ = batch["video"].shape
        self.videos.append(
            {
                "name": str(batch["name"][0]),
                "frames": int(t),
                "height": int(h),
                "width": int(w),
                "queries": int(batch["query_points"].shape[1]),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )

    def on_test_epoch_end(self) -> None:
        # One row per video from every rank (a collective call: every rank takes part). No video
        # ids are given to the metric, so two videos that happen to share a name both count; the
        # sampler pads nothing, so there are no duplicates to drop. Rows and the videos' details
        # are both gathered in rank order, each rank's in the order it tracked them.
        with self.metric.sync_context():
            rows = self.metric.per_video()
        videos = self.videos
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict]] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(gathered, videos)
            videos = [v for part in gathered for v in part]
        if len(videos) != len(rows["id"]):
            raise RuntimeError(f"gathered {len(rows['id'])} score rows for {len(videos)} videos")
        per_video = [
            {**video, **{name: _number(rows[name][k]) for name in METRIC_NAMES}}
            for k, video in enumerate(videos)
        ]
        per_video.sort(key=lambda r: r["name"])
        means = {name: _number(rows[name].nanmean()) if per_video else None for name in METRIC_NAMES}
        # tapnet reports the plain mean over videos; a video with nothing to score (NaN) is left
        # out of that mean and counted here.
        means["num_videos"] = len(per_video)
        means["num_videos_without_score"] = sum(r["average_jaccard"] is None for r in per_video)
        self.result = {"means": means, "per_video": per_video}
        self.videos = []
        self.metric.reset()


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None
