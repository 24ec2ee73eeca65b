"""TAP-Vid metrics as a torchmetrics ``Metric`` that accumulates per-video rows and syncs over DDP."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from gmrw.metrics.tapvid import FIRST_MODE_RULES, METRIC_NAMES, QUERY_MODES, compute_tapvid_metrics


def video_id(name: str | int) -> int:
    """A stable non-negative int64 id for a video name (same on every rank and every run)."""
    if isinstance(name, (int, np.integer)):
        return int(name)
    digest = hashlib.blake2b(str(name).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class TapVidMetric(Metric):
    """Benchmark means of the TAP-Vid metrics over every video seen, on every rank.

    Each ``update`` scores its batch video by video (:func:`compute_tapvid_metrics`) and stores
    one row per video; ``compute`` gathers the rows of all ranks and averages them, so the result
    is the plain mean over videos, as tapnet reports it, however videos were split over ranks.

    Padding: samplers that pad the last ranks with repeated videos (Lightning's default
    ``DistributedSampler``) would count those videos twice. Pass ``video_ids`` (names or ints) to
    ``update`` and duplicates are dropped at ``compute`` (first occurrence kept); without ids,
    shard evaluation sets without padding (``gmrw.data.sampling.RankStridedSampler``).

    Args:
        query_mode: ``"first"`` or ``"strided"``.
        first_mode_rule: ``"tapnet"`` (default) or ``"reference_2022"``; see :mod:`gmrw.metrics.tapvid`.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, query_mode: str = "first", first_mode_rule: str = "tapnet", **kwargs):
        super().__init__(**kwargs)
        if query_mode not in QUERY_MODES:
            raise ValueError(f"unknown query mode {query_mode!r}; choose one of {list(QUERY_MODES)}")
        if first_mode_rule not in FIRST_MODE_RULES:
            raise ValueError(
                f"unknown first_mode_rule {first_mode_rule!r}; choose one of {list(FIRST_MODE_RULES)}"
            )
        self.query_mode = query_mode
        self.first_mode_rule = first_mode_rule
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(
        self,
        query_points: torch.Tensor,
        gt_occluded: torch.Tensor,
        gt_tracks: torch.Tensor,
        pred_occluded: torch.Tensor,
        pred_tracks: torch.Tensor,
        video_ids: Sequence[str | int] | torch.Tensor | None = None,
    ) -> None:
        scores = compute_tapvid_metrics(
            query_points,
            gt_occluded,
            gt_tracks,
            pred_occluded,
            pred_tracks,
            self.query_mode,
            self.first_mode_rule,
        )
        rows = torch.from_numpy(np.stack([scores[name] for name in METRIC_NAMES], axis=1))
        batch = rows.shape[0]
        if video_ids is None:
            ids = torch.full((batch,), -1, dtype=torch.int64)
        else:
            values = video_ids.tolist() if isinstance(video_ids, torch.Tensor) else list(video_ids)
            if len(values) != batch:
                raise ValueError(f"got {len(values)} video ids for a batch of {batch} videos")
            ids = torch.tensor([video_id(v) for v in values], dtype=torch.int64)
        # Flat 1-D float64 rows: ranks with different numbers of videos gather without trouble.
        self.rows.append(rows.reshape(-1).to(self.device))
        self.ids.append(ids.to(self.device))

    def _sync_dist(self, dist_sync_fn=None, process_group=None) -> None:
        # A rank that saw no video would otherwise offer torchmetrics' float32 placeholder, which
        # cannot be gathered with the other ranks' float64 rows.
        if isinstance(self.rows, list) and not self.rows:
            self.rows.append(torch.zeros(0, dtype=torch.float64, device=self.device))
            self.ids.append(torch.zeros(0, dtype=torch.int64, device=self.device))
        kwargs = {"process_group": process_group}
        if dist_sync_fn is not None:
            kwargs["dist_sync_fn"] = dist_sync_fn
        super()._sync_dist(**kwargs)

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows, ids = self.rows, self.ids
        # Before sync these are lists; after a DDP sync torchmetrics has concatenated them.
        if isinstance(rows, list):
            if not rows:
                return torch.zeros(0, len(METRIC_NAMES), dtype=torch.float64), torch.zeros(
                    0, dtype=torch.int64
                )
            rows, ids = torch.cat(rows), torch.cat(ids)
        rows, ids = rows.reshape(-1, len(METRIC_NAMES)).cpu(), ids.reshape(-1).cpu()
        keep, seen = [], set()
        for i, v in enumerate(ids.tolist()):
            if v >= 0 and v in seen:
                continue
            seen.add(v)
            keep.append(i)
        index = torch.tensor(keep, dtype=torch.long)
        return rows[index], ids[index]

    def per_video(self) -> dict[str, torch.Tensor]:
        """The stored rows (this rank's, or all ranks' once synced): ``{"id": (V,), name: (V,) ...}``."""
        rows, ids = self._gathered()
        return {"id": ids, **{name: rows[:, k] for k, name in enumerate(METRIC_NAMES)}}

    def compute(self) -> dict[str, torch.Tensor]:
        rows, _ = self._gathered()
        means = (
            rows.mean(dim=0)
            if len(rows)
            else torch.full((len(METRIC_NAMES),), float("nan"), dtype=torch.float64)
        )
        out = {name: means[k] for k, name in enumerate(METRIC_NAMES)}
        out["num_videos"] = torch.tensor(float(len(rows)), dtype=torch.float64)
        return out
