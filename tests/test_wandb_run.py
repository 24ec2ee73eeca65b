"""One W&B run per training run: the id is chosen once and kept with the run, a stopped and resumed
run logs into the same W&B run with its steps continuing, and a dashboard gets what it should
(read back from the offline ``.wandb`` logs with wandb's own reader)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import hydra
import pytest
import torch

from gmrw.training.run import TrainingStopped, train
from gmrw.training.wandb_run import (
    CHECKPOINT_KEY,
    RUN_RECORD,
    ContinuingWandbLogger,
    RunRecord,
    WandbRunChoice,
    choose_wandb_run,
    launch_rank,
    read_record,
    write_record,
)
from helpers import TINY_RUN, compose_train, wandb_logs


def _checkpoint(path: Path, run_id: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 3, **({CHECKPOINT_KEY: run_id} if run_id else {})}, path)
    return path


def test_a_new_run_gets_a_new_id(tmp_path):
    first, second = choose_wandb_run(tmp_path / "a", None), choose_wandb_run(tmp_path / "b", None)
    assert first.source == "new" and first.logged_through is None
    assert len(first.id) == 8 and first.id.isalnum() and first.id != second.id


def test_id_order_explicit_then_checkpoint_then_run_directory(tmp_path):
    run = tmp_path / "run"
    write_record(run, RunRecord("ownid123", last_step=41))
    # The run directory's own record (a run stopped before its first checkpoint).
    assert choose_wandb_run(run, None) == WandbRunChoice("ownid123", str(run / RUN_RECORD), 41)
    # The checkpoint resumed from wins; its run's record (two levels up) says what was logged.
    other = tmp_path / "other"
    write_record(other, RunRecord("ckptid12", last_step=9))
    ckpt = _checkpoint(other / "checkpoints" / "last.ckpt", "ckptid12")
    choice = choose_wandb_run(run, str(ckpt))
    assert (choice.id, choice.logged_through) == ("ckptid12", 9) and "checkpoint" in choice.source
    # An explicit id wins over both.
    explicit = choose_wandb_run(run, str(ckpt), "given123")
    assert (explicit.id, explicit.source, explicit.logged_through) == ("given123", "logger.wandb.id", None)
    # A checkpoint without an id (another logger trained it) falls back to the run's own record.
    plain = _checkpoint(tmp_path / "plain" / "last.ckpt", None)
    assert choose_wandb_run(run, str(plain)).id == "ownid123"


def test_record_is_written_whole(tmp_path):
    write_record(tmp_path, RunRecord("abc", 5))
    assert json.loads((tmp_path / RUN_RECORD).read_text()) == {"id": "abc", "last_step": 5}
    assert read_record(tmp_path) == RunRecord("abc", 5)
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / RUN_RECORD).write_text('{"id": ')  # damaged: as if there were none
    assert read_record(tmp_path) is None


def test_wandb_settings_are_settable_on_the_command_line(tmp_path):
    overrides = [
        "logger.wandb.entity=my-lab",
        "logger.wandb.group=lr_sweep",
        "logger.wandb.job_type=finetune",
        "logger.wandb.notes=first try",
        "logger.wandb.id=abcd1234",
        "tags=[kinetics,lr]",
    ]
    wandb = compose_train(overrides, tmp_path).logger.wandb
    assert (wandb.entity, wandb.group, wandb.job_type, wandb.notes) == (
        "my-lab",
        "lr_sweep",
        "finetune",
        "first try",
    )
    assert list(wandb.tags) == ["kinetics", "lr"] and wandb.offline is True
    logger = hydra.utils.instantiate(wandb)  # W&B itself starts only when something is logged
    assert isinstance(logger, ContinuingWandbLogger) and logger.version == "abcd1234"


def test_launch_rank_reads_the_launcher_variables():
    assert launch_rank({}) == 0
    assert launch_rank({"RANK": "3", "LOCAL_RANK": "1"}) == 3
    assert launch_rank({"LOCAL_RANK": "1"}) == 1
    assert launch_rank({"SLURM_PROCID": "2"}) == 2


@pytest.mark.slow  # a W&B offline run: ~10 s to start and finish on a busy machine
def test_logger_skips_steps_already_logged_and_keeps_the_record(tmp_path):
    logger = ContinuingWandbLogger(
        project="gmrw-test",
        id="skip1234",
        save_dir=str(tmp_path),
        offline=True,
        logged_through=3,
        record_dir=str(tmp_path),
    )
    for step in range(6):
        logger.log_metrics({"train/loss": float(step)}, step=step)
    logger.finish()
    (log,) = wandb_logs(tmp_path)
    assert log["run_id"] == "skip1234"
    assert log["steps"] == [4, 5]  # W&B's own step is the trainer's; 0-3 were in the run already
    assert read_record(tmp_path) == RunRecord("skip1234", 5)


# A tiny run that still draws everything a dashboard shows: both validation sets, the tracks video,
# flow pictures, the learning rate and the gradient norm, at every step.
TINY_WANDB = [
    *TINY_RUN,
    "data.val_sets.val.num_videos=1",
    "data.val_sets.val.num_frames=4",
    "data.val_sets.val.frame_size=[32,32]",
    "data.val_sets.val_photos.num_videos=1",
    "data.val_sets.val_photos.num_frames=4",
    "model.tracking.processing_size=32",
    "model.validation_tracking.processing_size=32",
    "logger=wandb",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "callbacks.flow_visualizer.every_n_steps=100",
    "callbacks.track_video.min_side=32",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.max_steps=6",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


@pytest.mark.slow  # two short trainings with validation and W&B: ~1.5 min on a busy machine
def test_stopped_run_resumed_elsewhere_continues_its_wandb_run(tmp_path, monkeypatch):
    """The issue's case: train in ``a``, stopped by SIGTERM after step 3; resume from ``a`` in a new
    run directory ``b``. One W&B run id across both; W&B steps 0..5 each logged exactly once;
    everything a dashboard shows is in the logs."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    first, second = tmp_path / "a", tmp_path / "b"
    stop = [
        "+callbacks.stop._target_=helpers.signal_at_step",
        "+callbacks.stop.step=3",
        f"+callbacks.stop.signum={int(signal.SIGTERM)}",
    ]
    with pytest.raises(TrainingStopped):
        train(compose_train([*TINY_WANDB, "validate_before_training=true", *stop], first))
    run_id = read_record(first).id
    assert (
        torch.load(first / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)[CHECKPOINT_KEY]
        == run_id
    )

    train(compose_train([*TINY_WANDB, f"ckpt_path={first}"], second))
    assert read_record(second).id == run_id
    assert (
        torch.load(second / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)[CHECKPOINT_KEY]
        == run_id
    )

    (log_a,) = wandb_logs(first)
    (log_b,) = wandb_logs(second)
    assert log_a["run_id"] == log_b["run_id"] == run_id
    # Stopped at step 3: batches 0-2 were logged; the resumed run logs 3-5.
    assert log_a["steps"] == [0, 1, 2] and log_b["steps"] == [3, 4, 5]
    keys = {}
    for log in (log_a, log_b):
        for step, logged in log["keys"].items():
            keys.setdefault(step, set()).update(logged)
    every_step = {
        "train/loss",
        "train/cycle_loss",
        "train/accuracy",
        "train/grad_norm",
        "lr-AdamW",
        "trainer/global_step",
    }
    for step in range(6):
        assert every_step <= keys[step], (step, every_step - keys[step])
    # Validation before training (step 0) and after steps 2, 4 and 6 (logged at 1, 3, 5): both
    # sets' scores, the tracks video and a flow picture, in the same row.
    validation = {
        "val/aj",
        "val/delta_avg",
        "val/oa",
        "val_photos/aj",
        "val_photos/delta_avg",
        "val_photos/oa",
    }
    for step in (0, 1, 3, 5):
        assert validation | {"val/tracks.videos", "train/flows.filenames"} <= keys[step], step
    assert not validation & (keys[2] | keys[4])
    # The composed config, and the media files themselves.
    for log in (log_a, log_b):
        assert (
            log["config"]["trainer"]["max_steps"] == 6
            and log["config"]["model"]["net"]["feature_channels"] == 16
        )
    media = log_a["media"] + log_b["media"]
    assert sum(p.endswith(".mp4") for p in media) == 4 and sum(p.endswith(".png") for p in media) == 4
    for path in media:
        folder = first if path in log_a["media"] else second
        assert list(folder.glob(f"wandb/offline-run-*/files/{path}")), path
