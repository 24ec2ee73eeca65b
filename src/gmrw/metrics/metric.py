"""TAP-Vid metrics as a torchmetrics ``Metric`` that accumulates per-video rows and syncs over DDP."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from gmrw.choices import FIRST_MODE_RULES, QUERY_MODES, check_choice
from gmrw.metrics.tapvid import METRIC_NAMES, compute_tapvid_metrics

#: Video ids are stored in the float64 score rows, which hold integers below 2**53 exactly.
_ID_LIMIT = 2**53


def video_id(name: str | int) -> int:
    """A stable id in [0, 2**53) for a video name (same on every rank and every run); an int is
    its own id."""
    if isinstance(name, (int, np.integer)):
        if not 0 <= int(name) < _ID_LIMIT:
            raise ValueError(f"integer video ids must lie in [0, 2**53), got {name}")
        return int(name)
    digest = hashlib.blake2b(str(name).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _ID_LIMIT


class TapVidMetric(Metric):
    """Benchmark means of the TAP-Vid metrics over every video seen, on every rank.

    Each ``update`` scores its batch video by video (:func:`compute_tapvid_metrics`) and stores
    one row per video; ``compute`` gathers the rows of all ranks and averages them, so the result
    is the plain mean over videos, as tapnet reports it, however videos were split over ranks.

    Padding: samplers that pad the last ranks with repeated videos (Lightning's default
    ``DistributedSampler``) would count those videos twice. Pass ``video_ids`` (names or ints) to
    ``update`` and duplicates are dropped at ``compute`` (first occurrence kept); without ids,
    shard evaluation sets without padding (``gmrw.data.loaders.RankStridedSampler``).

    Args:
        query_mode: ``"first"`` or ``"strided"``.
        first_mode_rule: ``"tapnet"`` (default) or ``"reference_2022"``; see :mod:`gmrw.metrics.tapvid`.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, query_mode: str = "first", first_mode_rule: str = "tapnet", **kwargs):
        super().__init__(**kwargs)
        check_choice(query_mode, QUERY_MODES, "query mode")
        check_choice(first_mode_rule, FIRST_MODE_RULES, "first_mode_rule")
        self.query_mode = query_mode
        self.first_mode_rule = first_mode_rule
        # One float64 row per video: its id (-1: none given), then its scores. A rank that saw no
        # video offers torchmetrics' empty placeholder of the metric's dtype to the gather, so the
        # metric is float64 like the rows.
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)

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
        scores = np.stack([scores[name] for name in METRIC_NAMES], axis=1)
        batch = scores.shape[0]
        if video_ids is None:
            ids = np.full(batch, -1.0)
        else:
            values = video_ids.tolist() if isinstance(video_ids, torch.Tensor) else list(video_ids)
            if len(values) != batch:
                raise ValueError(f"got {len(values)} video ids for a batch of {batch} videos")
            ids = np.array([video_id(v) for v in values], dtype=np.float64)
        rows = torch.from_numpy(np.concatenate([ids[:, None], scores], axis=1))
        # Flat 1-D rows: ranks with different numbers of videos gather without trouble.
        self.rows.append(rows.reshape(-1).to(self.device))

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (V, M), ids (V,) int64) of the stored videos, a repeated id kept once."""
        rows = self.rows
        # Before a sync this is a list; after a DDP sync torchmetrics has concatenated it.
        if isinstance(rows, list):
            rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64)
        rows = rows.reshape(-1, 1 + len(METRIC_NAMES)).cpu()
        ids = rows[:, 0].long()
        keep, seen = [], set()
        for i, v in enumerate(ids.tolist()):
            if v >= 0 and v in seen:
                continue
            seen.add(v)
            keep.append(i)
        index = torch.tensor(keep, dtype=torch.long)
        return rows[index, 1:], ids[index]

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
