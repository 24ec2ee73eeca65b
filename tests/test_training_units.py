"""Unit tests of the training plumbing: curriculum, step-resumable sampling, summary file."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
import torch

from gmrw.callbacks.summary import RunSummary
from gmrw.data.loaders import RankStridedSampler, StepStreamSampler, split_key
from gmrw.training.curriculum import SmoothnessCurriculum


def test_curriculum_matches_the_paper_schedule():
    c = SmoothnessCurriculum()
    assert [c(s) for s in (0, 5000, 10000, 15000, 20000)] == [0.0, 0.0, 100.0, 200.0, 200.0]
    assert c(7500) == pytest.approx(50.0)
    assert SmoothnessCurriculum(enabled=False, constant_weight=3.0)(12345) == 3.0
    assert SmoothnessCurriculum(step_offset=141_000)(0) == 200.0
    with pytest.raises(ValueError, match="end_step > start_step"):
        SmoothnessCurriculum(start_step=10, end_step=10)


def test_stream_covers_each_pass_once_and_reshuffles():
    sampler = StepStreamSampler(10, seed=3, shuffle=True)
    keys = list(itertools.islice(iter(sampler), 20))
    first, second = [k[0] for k in keys[:10]], [k[0] for k in keys[10:]]
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert first != second, "each pass should be a fresh permutation"
    assert len({k[1] for k in keys}) == 20, "every position gets its own crop seed"


def test_stream_ranks_are_disjoint_and_resume_where_they_stopped():
    ranks = [StepStreamSampler(12, seed=1, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [list(itertools.islice(iter(s), 6)) for s in ranks]
    assert not {k[0] for k in per_rank[0]} & {k[0] for k in per_rank[1]}
    assert sorted(k[0] for k in per_rank[0] + per_rank[1]) == list(range(12))
    consumed = {"n": 4}
    resumed = StepStreamSampler(12, seed=1, rank=1, world_size=2, start_fn=lambda: consumed["n"])
    assert list(itertools.islice(iter(resumed), 2)) == per_rank[1][4:6]


def test_stream_length_bounds_the_run():
    sampler = StepStreamSampler(5, length=7, start_fn=lambda: 3)
    assert len(sampler) == 7 and len(list(sampler)) == 4


def test_split_key_accepts_plain_indices():
    assert split_key((4, 99)) == (4, 99)
    index, seed = split_key(4, base_seed=2)
    assert index == 4 and seed != split_key(5, base_seed=2)[1]


def test_rank_strided_sampler_neither_pads_nor_drops():
    shards = [list(RankStridedSampler(7, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))
    assert [len(RankStridedSampler(7, r, 3)) for r in range(3)] == [3, 2, 2]


def test_run_summary_records_first_and_last(tmp_path):
    summary = RunSummary(str(tmp_path))
    trainer = SimpleNamespace(callback_metrics={}, global_step=0, checkpoint_callbacks=[])
    trainer.callback_metrics = {"val/aj": torch.tensor(0.1)}
    summary._record(trainer)
    trainer.callback_metrics = {
        "val/aj": torch.tensor(0.3),
        "train/loss": torch.tensor(2.0),
        "x": torch.ones(3),
    }
    summary._record(trainer)
    trainer.global_step = 7
    summary.write(trainer, status="finished")
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["first"] == {"train/loss": 2.0, "val/aj": pytest.approx(0.1)}
    assert written["last"] == {"train/loss": 2.0, "val/aj": pytest.approx(0.3)}
    assert written["steps"] == 7 and written["status"] == "finished" and written["last_checkpoint"] is None
