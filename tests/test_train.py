"""End-to-end training: fast_dev_run, learning, DDP on 2 CPU processes, exact resume, the console script."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from gmrw.choices import ConfigError
from gmrw.training.run import resolve_ckpt_path, train
from helpers import compose_train, run_console

# A small network so that end-to-end runs take seconds on 2 cores; the default experiment's full
# architecture is exercised by test_fast_dev_run_default.
# The default run's keys, small (configs/data/synthetic.yaml).
SMALL = [
    "model.net.feature_channels=32",
    "model.net.num_transformer_layers=2",
    "model.net.ffn_dim_expansion=2",
    "data.num_workers=0",
    # the world and both validation sets, small
    "data.train_set.img_size1=[64,64]",
    "data.train_set.img_size2=[48,48]",
    "data.train_set.frame_size=[64,64]",
    "data.train_set.texture_bank=8",
    "data.val_sets.val.num_videos=2",
    "data.val_sets.val.num_frames=6",
    "data.val_sets.val.frame_size=[48,48]",
    "data.val_sets.val_photos.num_videos=1",
    "data.val_sets.val_photos.num_frames=4",
    "model.tracking.processing_size=64",
    "model.validation_tracking.processing_size=64",
]


def _metrics_rows(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    assert files, f"no CSV metrics under {run_dir}"
    with open(files[-1]) as handle:
        return list(csv.DictReader(handle))


def _series(rows: list[dict], key: str) -> dict[int, float]:
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


@pytest.mark.slow  # the paper's architecture at the default experiment's size: ~45 s on one busy core
def test_fast_dev_run_default(tmp_path):
    cfg = compose_train(["debug=fast_dev_run", "logger=none", "data.num_workers=0"], tmp_path)
    summary = train(cfg)
    # One training step and one validation batch per set, with finite numbers for both.
    assert summary["status"] == "finished" and summary["steps"] == 1
    for key in ("train/loss", "train/cycle_loss", "train/accuracy", "train/grad_norm"):
        assert key in summary["last"] and math.isfinite(summary["last"][key]), key
    assert summary["last"]["train/grad_norm"] > 0
    for key in ("val/aj", "val_photos/aj"):
        assert 0.0 <= summary["last"][key] <= 1.0, key


def test_bf16_on_a_cpu_without_fast_bf16_says_so(tmp_path, monkeypatch, caplog):
    from gmrw.models import cpu

    monkeypatch.setattr(cpu, "bf16_matmul_speedup", lambda: 0.5)
    overrides = SMALL + ["logger=none", "trainer.precision=bf16-mixed", "trainer.max_steps=1"]
    cfg = compose_train(
        [*overrides, "validate_before_training=false", "trainer.val_check_interval=1"], tmp_path
    )
    with caplog.at_level("WARNING", logger="gmrw.train"):
        summary = train(cfg)
    assert summary["steps"] == 1
    assert any("bfloat16 matmuls run at 0.50x" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_short_run_learns_and_writes_summary(tmp_path):
    overrides = [
        *SMALL,
        "logger=csv",
        "trainer.max_steps=40",
        "trainer.val_check_interval=40",
        "validate_before_training=true",  # the default experiment skips it; its summary would lack step 0
        "trainer.log_every_n_steps=1",
        "callbacks.model_checkpoint.every_n_train_steps=20",
        "callbacks.flow_visualizer.every_n_steps=20",
        "model.optimizer.lr=5e-4",
        "model.smoothness_curriculum.enabled=false",
        "model.smoothness_curriculum.constant_weight=0.0",
    ]
    summary = train(compose_train(overrides, tmp_path))
    cycle = _series(_metrics_rows(tmp_path), "train/cycle_loss")
    steps = sorted(cycle)
    first = sum(cycle[s] for s in steps[:8]) / 8
    last = sum(cycle[s] for s in steps[-8:]) / 8
    assert last < first - 0.05, (
        f"cycle loss did not decrease: first 8 mean {first:.3f}, last 8 mean {last:.3f}"
    )

    assert summary["steps"] == 40 and summary["status"] == "finished"
    assert Path(summary["last_checkpoint"]).name == "last.ckpt"
    assert Path(summary["last_checkpoint"]).is_file()
    for key in ("train/loss", "train/cycle_loss", "train/accuracy", "val/aj", "val/delta_avg", "val/oa"):
        assert key in summary["first"] and key in summary["last"], key
    # Both validation sets, before training and after the last step, in the history.
    for key in ("val/aj", "val_photos/aj", "val_photos/delta_avg", "val_photos/oa"):
        assert [step for step, _ in summary["history"][key]] == [0, 40], key
    assert len(summary["history"]["train/cycle_loss"]) >= 30
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert list((tmp_path / "viz").glob("flows_step*.png")), "flow visualiser wrote no picture"


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    common = [
        *SMALL,
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=100",
        "validate_before_training=false",
        "callbacks.model_checkpoint.every_n_train_steps=3",
        "callbacks.flow_visualizer.every_n_steps=100",
        # A curriculum that moves during these few steps, so resuming it is really tested.
        "model.smoothness_curriculum.start_step=1",
        "model.smoothness_curriculum.end_step=8",
        "model.smoothness_curriculum.end_value=2.0",
    ]
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    train(compose_train([*common, "trainer.max_steps=6"], straight))
    train(compose_train([*common, "trainer.max_steps=3"], first))
    last = resolve_ckpt_path(str(first))  # a run directory resolves to its last.ckpt
    assert last.endswith("last.ckpt")
    summary = train(compose_train([*common, "trainer.max_steps=6", f"ckpt_path={last}"], resumed))
    assert summary["steps"] == 6
    # summary.json's history carries on from the checkpoint: the steps before the resume are there.
    straight_summary = json.loads((straight / "summary.json").read_text())
    assert [p[0] for p in summary["history"]["train/loss"]] == [
        p[0] for p in straight_summary["history"]["train/loss"]
    ]

    reference_loss = _series(_metrics_rows(straight), "train/loss")
    resumed_loss = _series(_metrics_rows(resumed), "train/loss")
    reference_weight = _series(_metrics_rows(straight), "train/smoothness_weight")
    resumed_weight = _series(_metrics_rows(resumed), "train/smoothness_weight")
    assert min(resumed_loss) == 3, "the resumed run did not continue at step 3"
    for step in (3, 4, 5):
        assert resumed_weight[step] == reference_weight[step]
        assert resumed_loss[step] == pytest.approx(reference_loss[step], rel=1e-5, abs=1e-6)


def test_bad_ckpt_path_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"))
    with pytest.raises(ConfigError, match="directory without checkpoints"):
        resolve_ckpt_path(str(tmp_path))


@pytest.mark.slow
def test_ddp_sim_two_ranks(tmp_path):
    result = run_console(
        "gmrw-train",
        [
            *SMALL,
            "trainer=ddp_sim",
            "logger=csv",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "callbacks=[default,batch_indices]",
            "callbacks.model_checkpoint.every_n_train_steps=3",
            "data.batch_size=2",
            "data.val_sets.val_photos.num_videos=2",  # a video per process
        ],
        cwd=tmp_path,
        env={"GMRW_RUNS": str(tmp_path / "runs")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run_dirs = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1, f"expected one run directory for both ranks, found {run_dirs}"
    run_dir = run_dirs[0]
    seen = {}
    for rank in (0, 1):
        lines = (run_dir / "batch_indices" / f"rank{rank}.jsonl").read_text().splitlines()
        seen[rank] = [i for line in lines for i in json.loads(line)["index"]]
        assert len(seen[rank]) == 3 * 2
    assert not set(seen[0]) & set(seen[1]), f"ranks trained on the same items: {seen}"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert checkpoints == ["last.ckpt", "step=0000003.ckpt"], checkpoints
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3


@pytest.mark.slow  # a console script in a subprocess
def test_console_prints_composed_config(tmp_path):
    result = run_console("gmrw-train", ["experiment=kinetics", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "frame_gap: 20" in result.stdout and "smoothness_loss: false" in result.stdout
    assert not (tmp_path / "runs").exists(), "--cfg job must not create a run directory"


@pytest.mark.slow  # a console script in a subprocess
def test_console_unknown_experiment_lists_choices(tmp_path):
    result = run_console("gmrw-train", ["experiment=kinetic"], cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "unknown experiment=kinetic" in message
    for name in ("kinetics", "kinetics_finetune", "kubric", "synthetic"):
        assert name in message


@pytest.mark.slow  # a console script in a subprocess
def test_console_missing_init_checkpoint_is_explained(tmp_path):
    result = run_console(
        "gmrw-train", ["experiment=kinetics_finetune", "data.root=/nonexistent"], cwd=tmp_path
    )
    assert result.returncode != 0
    assert "model.init_from is required" in result.stderr + result.stdout
