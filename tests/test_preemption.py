"""Training that survives preemption, end to end on a tiny CPU run: SIGKILL at random moments,
SIGTERM / SIGUSR1, a truncated last.ckpt, a corrupt explicit checkpoint, a full disk."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import torch

from gmrw.checkpoint.choose import check_checkpoint
from gmrw.checkpoint.layout import PARTIAL_GLOB
from gmrw.checkpoint.write import CheckpointWriteError
from gmrw.choices import ConfigError
from gmrw.training.run import TrainingStopped, train
from helpers import BIN, TINY_RUN, compose_train, run_console

pytestmark = pytest.mark.slow

STEPS = 8
# The smallest run that still trains the real model: tiny frames and network, no validation,
# a checkpoint every step (so that kills land in writes as well as in steps).
TINY = [
    *TINY_RUN,
    "logger=csv",
    "callbacks=[model_checkpoint,summary]",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "validate_before_training=false",
    "trainer.log_every_n_steps=1",
    "+trainer.limit_val_batches=0",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    # A curriculum that moves during the run, so its resume is tested too.
    "model.smoothness_curriculum.start_step=1",
    "model.smoothness_curriculum.end_step=6",
    "model.smoothness_curriculum.end_value=2.0",
]
STEPS_ARG = f"trainer.max_steps={STEPS}"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_run(reference: dict, run_dir: Path, summary: dict, context: str) -> None:
    """The run in ``run_dir`` ended where the uninterrupted reference did: same step, same loss
    (when the last session trained at all), same weights."""
    assert summary["steps"] == STEPS, f"{context}: ended at step {summary['steps']}"
    loss = summary["last"].get("train/loss")
    if loss is not None:
        assert loss == pytest.approx(reference["loss"], rel=1e-5, abs=1e-6), context
    weights = _weights(run_dir / "checkpoints" / "last.ckpt")
    for name, value in reference["weights"].items():
        torch.testing.assert_close(
            weights[name], value, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{context}: {name}: {m}"
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("reference")
    summary = train(compose_train([*TINY, STEPS_ARG], run_dir))
    assert summary["steps"] == STEPS
    return {"loss": summary["last"]["train/loss"], "weights": _weights(run_dir / "checkpoints" / "last.ckpt")}


def _start_console(runs: Path, name: str, extra: list[str] = ()) -> subprocess.Popen:
    """``gmrw-train`` in the background, as a user starts it; its stderr goes to ``<runs>/<name>.err``
    (a file, not a pipe nobody reads while it runs)."""
    env = {**os.environ, "GMRW_RUNS": str(runs), "GMRW_RUN_NAME": name, "PYTHONUNBUFFERED": "1"}
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / f"{name}.err", "w") as stderr:
        return subprocess.Popen(
            [str(BIN / "gmrw-train"), *TINY, STEPS_ARG, *extra],
            cwd=runs.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _wait_for(condition, process: subprocess.Popen, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(poll)
    raise AssertionError(f"nothing happened within {timeout} s")


def test_sigkill_at_random_moments_resumes_to_the_same_step_and_loss(reference, tmp_path, caplog):
    """Trial 0 is killed as soon as a checkpoint write after step 2 is under way (its temporary
    file exists), the others at a random moment after a random step; each restarts in its own run directory,
    as a requeued job does, and must end exactly where the uninterrupted run did."""
    caplog.set_level(logging.INFO, logger="gmrw.train")
    runs = tmp_path / "runs"
    rng = random.Random()
    outcomes = []
    for trial in range(3):
        name = f"trial{trial}"
        run_dir = runs / "synthetic" / name
        checkpoints = run_dir / "checkpoints"
        process = _start_console(runs, name)
        try:
            if trial == 0:
                step_file = checkpoints / "step=0000002.ckpt"
                running = _wait_for(lambda path=step_file: path.exists(), process, 120)
                mid_write = lambda folder=checkpoints: any(folder.glob(PARTIAL_GLOB))  # noqa: E731
                running = running and _wait_for(mid_write, process, 120, 0.001)
                moment = "during a checkpoint write after step 2"
            else:
                # Anywhere in the run, whatever the machine's speed: after step k's checkpoint, within
                # about one step's time.
                k = rng.randint(1, STEPS - 2)
                step_file = checkpoints / f"step={k:07d}.ckpt"
                running = _wait_for(lambda path=step_file: path.exists(), process, 120)
                delay = rng.uniform(0.0, 0.4)
                time.sleep(delay)
                moment = f"{delay:.2f} s after step {k}'s checkpoint"
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
        if not running or process.returncode != -signal.SIGKILL:
            moment += f" (but it had ended, status {process.returncode}: {(runs / f'{name}.err').read_text()[-2000:]})"
        left = sorted(p.name for p in [*checkpoints.glob("*.ckpt"), *checkpoints.glob(PARTIAL_GLOB)])
        context = f"trial {trial}, killed {moment} (left {left})"
        steps = []
        for path in checkpoints.glob("*.ckpt"):
            check = check_checkpoint(path)
            assert check.intact, f"{context}: {path.name} is not whole: {check.problem}"
            steps.append(check.step)
        # The restart: same command, same run directory, no ckpt_path.
        caplog.clear()
        summary = train(compose_train([*TINY, STEPS_ARG], run_dir))
        started = re.findall(r"resuming from .* \(step (\d+)\)", caplog.text)
        assert started == ([str(max(steps))] if steps else []), f"{context}: restarted from {started}"
        _assert_same_run(reference, run_dir, summary, context)
        assert not list(checkpoints.glob(PARTIAL_GLOB)), (
            f"{context}: a leftover temporary file survived the restart"
        )
        outcomes.append(context)
    print("\n".join(outcomes))


def test_sigterm_saves_last_checkpoint_and_exits_143(tmp_path):
    runs = tmp_path / "runs"
    checkpoints = runs / "synthetic" / "term" / "checkpoints"
    process = _start_console(
        runs, "term", ["trainer.max_steps=1000", "callbacks.model_checkpoint.every_n_train_steps=2"]
    )
    try:
        assert _wait_for(lambda: (checkpoints / "step=0000002.ckpt").exists(), process, timeout=120)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait(timeout=30)
    stderr = (runs / "term.err").read_text()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("gmrw-train:")]
    assert "stopped by SIGTERM: saved" in line and "last.ckpt" in line
    check = check_checkpoint(checkpoints / "last.ckpt")
    assert check.intact and 2 <= check.step < 1000
    assert f"at step {check.step};" in line
    summary = json.loads((runs / "synthetic" / "term" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == check.step


def test_sigusr1_saves_and_the_restart_is_exact(reference, tmp_path, caplog):
    """Outside SLURM, SIGUSR1 stops like SIGTERM; here it comes right after step 3, whose
    periodic checkpoint is then deleted so that the restart must use the one saved on the signal."""
    stop = [
        "+callbacks.stop._target_=helpers.signal_at_step",
        "+callbacks.stop.step=3",
        f"+callbacks.stop.signum={int(signal.SIGUSR1)}",
        "callbacks.model_checkpoint.every_n_train_steps=2",
    ]
    with pytest.raises(TrainingStopped) as info:
        train(compose_train([*TINY, STEPS_ARG, *stop], tmp_path))
    assert info.value.exit_code == 128 + signal.SIGUSR1
    assert "stopped by SIGUSR1" in str(info.value)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt", "step=0000002.ckpt"]
    assert check_checkpoint(checkpoints / "last.ckpt").step == 3
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, "the handler outlived the trainer"
    caplog.set_level(logging.INFO, logger="gmrw.train")
    summary = train(
        compose_train([*TINY, STEPS_ARG, "callbacks.model_checkpoint.every_n_train_steps=2"], tmp_path)
    )
    assert "last.ckpt (step 3)" in caplog.text
    _assert_same_run(reference, tmp_path, summary, "resumed after SIGUSR1 at step 3")


def test_slurm_requeue_cycle_resumes_in_the_same_run_directory(reference, tmp_path, monkeypatch, caplog):
    """A simulated SLURM job: Lightning's SLURMEnvironment takes SIGUSR1 (after step 2: it saves
    hpc_ckpt_1.ckpt and calls `scontrol requeue`, here a stand-in that records its arguments),
    SLURM's SIGTERM follows (after step 4: last.ckpt, exit 143), and the requeued job, with the
    same job id, finds its run directory and finishes exactly as an uninterrupted run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "gmrw",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODELIST": "127.0.0.1",
    }
    signals = [
        *[
            f"+callbacks.usr1.{k}"
            for k in ("_target_=helpers.signal_at_step", "step=2", f"signum={int(signal.SIGUSR1)}")
        ],
        *[
            f"+callbacks.term.{k}"
            for k in ("_target_=helpers.signal_at_step", "step=4", f"signum={int(signal.SIGTERM)}")
        ],
    ]
    env = {
        **slurm,
        "GMRW_RUNS": str(tmp_path / "runs"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    env.pop("GMRW_RUN_NAME", None)
    monkeypatch.delenv("GMRW_RUN_NAME", raising=False)
    first = run_console("gmrw-train", [*TINY, STEPS_ARG, *signals], cwd=tmp_path, env=env)
    assert first.returncode == 128 + signal.SIGTERM, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "synthetic" / "slurm-4242"
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert check_checkpoint(run_dir / "hpc_ckpt_1.ckpt").step == 2
    assert check_checkpoint(run_dir / "checkpoints" / "last.ckpt").step == 4

    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.INFO, logger="gmrw.train")
    summary = train(compose_train([*TINY, STEPS_ARG], run_dir))
    assert "last.ckpt (step 4)" in caplog.text
    _assert_same_run(reference, run_dir, summary, "requeued after SIGUSR1 at step 2 and SIGTERM at step 4")


def test_truncated_last_resumes_from_the_older_intact_one_without_the_resumable_warning(
    reference, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    train(
        compose_train(
            [*TINY, "trainer.max_steps=5", "callbacks.model_checkpoint.every_n_train_steps=2"], first
        )
    )
    last = first / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a kill during a non-atomic write leaves

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(compose_train([*TINY, STEPS_ARG, f"ckpt_path={first}"], resumed))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "not resumable" in m], messages
    assert "skipped" in caplog.text and "last.ckpt" in caplog.text and "truncated" in caplog.text
    assert "step=0000004.ckpt (step 4)" in caplog.text
    assert "resumes exactly at sample 8" in caplog.text  # 4 steps × batch 2
    _assert_same_run(reference, resumed, summary, "resumed from step 4 after a truncated last.ckpt")


def test_corrupt_explicit_checkpoint_stops_with_one_line(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04" + os.urandom(4000))
    with pytest.raises(ConfigError, match="corrupt.ckpt: truncated or not a checkpoint archive"):
        train(compose_train([*TINY, STEPS_ARG, f"ckpt_path={corrupt}"], tmp_path / "run"))

    result = run_console(
        "gmrw-train", [*TINY, f"ckpt_path={corrupt}"], cwd=tmp_path, env={"GMRW_RUNS": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"gmrw-train: ckpt_path={corrupt}: truncated"), line


def test_disk_full_while_saving_names_the_folder_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    """The fourth checkpoint write fails with ENOSPC halfway through."""
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, destination, *args, **kwargs):
        if hasattr(destination, "write") and isinstance(obj, dict) and "optimizer_states" in obj:
            calls["n"] += 1
            if calls["n"] == 4:
                destination.write(b"PK\x03\x04" + bytes(1000))
                raise OSError(28, os.strerror(28))
        return real_save(obj, destination, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    # Writes: step 1 + last, step 2 + last: the fourth is last.ckpt at step 2.
    with pytest.raises(CheckpointWriteError) as info:
        train(compose_train([*TINY, "trainer.max_steps=4"], tmp_path))
    checkpoints = tmp_path / "checkpoints"
    message = str(info.value)
    assert f"in {checkpoints}:" in message and "No space left on device" in message and "untouched" in message
    assert check_checkpoint(checkpoints / "last.ckpt").step == 1, "last.ckpt of step 1 must survive"
    assert check_checkpoint(checkpoints / "step=0000001.ckpt").step == 1
    assert check_checkpoint(checkpoints / "step=0000002.ckpt").step == 2
    assert not list(checkpoints.glob(PARTIAL_GLOB))
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
