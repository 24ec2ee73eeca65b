"""Sweeps (``gmrw-train -m``) on Hydra's launchers: member folders named by their swept values, a
failing member that does not stop the others, DDP members in their own processes, and a SLURM
requeue (simulated by ``fake_slurm``) that brings a member back to its folder and W&B run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

import fake_slurm
from gmrw.checkpoint.choose import check_checkpoint
from gmrw.training.sweeps import (
    BASIC_LAUNCHER,
    MemberOutcome,
    launcher_problem,
    member_name,
    member_processes_problem,
    sweep_report,
    swept_keys,
)
from gmrw.training.wandb_run import read_record
from helpers import BIN, TINY_RUN, compose_train, wandb_logs

# Tiny members: a few training steps of a small network, no validation.
TINY = [
    *TINY_RUN,
    "callbacks=[model_checkpoint,summary]",
    "logger=csv",
    "validate_before_training=false",
    "+trainer.limit_val_batches=0",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def _sweep(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 900):
    """``gmrw-train -m ARGS`` as a user starts it on a login node: outside any SLURM or submitit
    job (their variables removed), with this folder on PYTHONPATH for ``helpers``' callbacks."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    tests = str(Path(__file__).parent)
    full_env = {
        **base,
        "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.run(
        [str(BIN / "gmrw-train"), "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_member_names_come_from_the_swept_values():
    keys = swept_keys(["trainer.max_steps=2,4", "seed=1", "model.optimizer.lr=1e-4,2e-4", "data.root=/d"])
    assert keys == ["trainer.max_steps", "model.optimizer.lr"]
    member = ["trainer.max_steps=4", "seed=1", "model.optimizer.lr=0.0002", "data.root=/d"]
    assert member_name(member, keys) == "trainer.max_steps=4,model.optimizer.lr=0.0002"
    # One folder name whatever the values hold; long names end with a hash of the whole.
    assert member_name(["data.root=/a/b"], ["data.root"]) == "data.root=_a_b"
    long = member_name([f"tags=[{'x' * 300}]"], ["tags"])
    assert len(long) <= 120 and long != member_name([f"tags=[{'x' * 299}]"], ["tags"])
    assert member_name(member, []) is None


def test_multi_process_members_need_a_launcher_that_starts_their_processes():
    ddp = {"devices": 2, "num_nodes": 1}
    assert launcher_problem({"devices": 1, "num_nodes": 1}, BASIC_LAUNCHER, {}) is None
    assert "hydra/launcher=submitit_local" in launcher_problem(ddp, BASIC_LAUNCHER, {})
    assert (
        launcher_problem(ddp, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", {})
        is None
    )
    # Inside a member's job: its tasks must be the trainer's processes.
    local = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2"}
    assert member_processes_problem(ddp, local) is None
    assert "tasks_per_node" in member_processes_problem({"devices": 4, "num_nodes": 1}, local)
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NAME": "train",
    }
    assert member_processes_problem({"devices": 4, "num_nodes": 2}, slurm) is None
    assert member_processes_problem({"devices": "auto", "num_nodes": 1}, {}) is None


def test_sweep_report_names_the_failed_members():
    outcomes = [
        MemberOutcome(0, "/s/a=1"),
        MemberOutcome(1, "/s/a=2", error="trainer.max_steps must be positive"),
    ]
    lines, failed = sweep_report(outcomes)
    assert failed and lines[0] == "1 of 2 sweep members failed:"
    assert lines[1] == "  #1 /s/a=2: trainer.max_steps must be positive" and lines[2] == "  finished: #0"
    assert sweep_report(outcomes[:1]) == (["sweep: all 1 members finished"], False)


def test_slurm_launcher_follows_the_trainer():
    cfg = compose_train(
        ["trainer=ddp", "trainer.num_nodes=2", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 0
    assert dict(launcher.additional_parameters) == {
        "signal": f"USR1@{launcher.signal_delay_s}",
        "requeue": True,
    }
    local = compose_train(["trainer=ddp_sim", "hydra/launcher=submitit_local"]).hydra.launcher
    assert (
        local._target_.endswith("LocalLauncher")
        and local.tasks_per_node == 2
        and local.timeout_min >= 24 * 60
    )


def test_ddp_sweep_on_the_basic_launcher_refuses_in_one_line(tmp_path):
    result = _sweep(
        ["trainer=ddp_sim", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, timeout=120
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("gmrw-train:")]
    assert "hydra/launcher=submitit_local" in line and "hydra/launcher=slurm" in line
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow  # members that fail before training: ~15 s of start-up on a busy machine
def test_basic_launcher_runs_every_member_and_names_the_failed_ones(tmp_path):
    """The issue's `gmrw-train -m trainer.max_steps=-1,-2`: both members run and both are named."""
    sweep = tmp_path / "sweep"
    result = _sweep([*TINY, "trainer.max_steps=-1,-2", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = result.stderr[result.stderr.index("gmrw-train: 2 of 2 sweep members failed:") :].splitlines()
    assert (
        report[1]
        == f"  #0 {sweep / 'trainer.max_steps=-1'}: trainer.max_steps must be a positive number of optimisation steps"
    )
    assert report[2].startswith(f"  #1 {sweep / 'trainer.max_steps=-2'}: trainer.max_steps must be")


@pytest.mark.slow  # two members of two processes each at once: ~2-3 min on a busy 2-core machine
def test_submitit_local_ddp_sweep_keeps_going_past_a_failing_member(tmp_path):
    """hydra/launcher=submitit_local with trainer=ddp_sim: member 0 trains in two processes, both in
    its own folder, and only rank 0 talks to W&B; member 1 fails; the sweep ends with status 1
    naming member 1 only."""
    sweep = tmp_path / "sweep"
    args = [
        *TINY,
        "logger=wandb",
        "trainer.log_every_n_steps=1",
        "trainer=ddp_sim",
        "trainer.max_steps=2,-1",
        "+callbacks.batch_indices._target_=gmrw.callbacks.batch_indices.BatchIndexRecorder",
        "+callbacks.batch_indices.output_dir=${paths.output_dir}",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
    ]
    result = _sweep(args, tmp_path, {"WANDB_SILENT": "true"})
    assert result.returncode == 1, result.stderr[-3000:]
    good, bad = sweep / "trainer.max_steps=2", sweep / "trainer.max_steps=-1"
    assert f"#1 {bad}: trainer.max_steps must be a positive number" in result.stderr, result.stderr[-3000:]
    assert f"#0 {good}" not in result.stderr and "finished: #0" in result.stderr
    summary = (good / "summary.json").read_text()
    assert '"status": "finished"' in summary and '"steps": 2' in summary
    # Both ranks trained, each in the member's own folder.
    assert sorted(p.name for p in (good / "batch_indices").glob("rank*.jsonl")) == [
        "rank0.jsonl",
        "rank1.jsonl",
    ]
    assert check_checkpoint(good / "checkpoints" / "last.ckpt").step == 2
    (log,) = wandb_logs(good)  # one W&B log: rank 1 started none
    assert log["run_id"] == read_record(good).id and log["steps"] == [0, 1]
    # No member's job warns about gmrw's submitit_local config sharing the plugin's name.
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))
    assert "validated against ConfigStore schema" not in logs


@pytest.mark.slow  # a member trained, requeued and trained again, with W&B: ~2 min on a busy machine
def test_slurm_requeue_brings_the_member_back_to_its_folder_and_wandb_run(tmp_path):
    """`hydra/launcher=slurm` through submitit's SLURM executor, on ``fake_slurm``: a job array of
    two members. In member 0, SIGUSR1 after step 2 (SLURM's warning before the time limit) makes
    Lightning save hpc_ckpt_1.ckpt and call `scontrol requeue`; SLURM's SIGTERM stops the job; the
    job starts again with the same ids and SLURM_RESTART_COUNT=1, finds its member folder and
    resumes there, in the same W&B run. Member 1 fails; the sweep names it and exits 1."""
    state = tmp_path / "slurm"
    state.mkdir()
    fake_slurm.install(tmp_path / "bin")
    sweep = tmp_path / "sweep"
    args = [
        *TINY,
        "logger=wandb",
        "callbacks=[model_checkpoint,summary,lr_monitor]",
        "trainer.log_every_n_steps=1",
        "trainer.max_steps=4,-1",
        "+callbacks.usr1._target_=helpers.signal_at_step",
        "+callbacks.usr1.step=2",
        f"+callbacks.usr1.signum={int(signal.SIGUSR1)}",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=test",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(state),
        "WANDB_SILENT": "true",
    }
    try:
        result = _sweep(args, tmp_path, env)
    finally:
        for pid in (state / "runners.pid").read_text().split() if (state / "runners.pid").exists() else []:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    member, failed = sweep / "trainer.max_steps=4", sweep / "trainer.max_steps=-1"
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"#1 {failed}: trainer.max_steps must be a positive number" in result.stderr, result.stderr[-3000:]
    assert "finished: #0" in result.stderr
    script = next(state.glob("script-*.sh")).read_text()
    for flag in ("--signal=USR1@120", "--requeue", "--ntasks-per-node=1", "--nodes=1", "--partition=test"):
        assert re.search(rf"^#SBATCH {re.escape(flag)}$", script, re.M), flag
    assert re.search(r"^#SBATCH --array=0-1", script, re.M)
    assert (state / "scontrol.log").read_text().split() == ["requeue", "7000_0"]
    assert check_checkpoint(member / "hpc_ckpt_1.ckpt").step == 2
    summary = (member / "summary.json").read_text()
    assert '"status": "finished"' in summary and '"steps": 4' in summary
    log = (member / "train.log").read_text()
    assert re.search(r"resuming from .*max_steps=4/checkpoints/last\.ckpt \(step 2\)", log), log[-3000:]
    first, second = wandb_logs(member)
    assert first["run_id"] == second["run_id"] == read_record(member).id
    assert first["steps"] == [0, 1] and second["steps"] == [2, 3]
    assert second["config"]["logger"]["wandb"]["group"] == "sweep"
    assert second["config"]["logger"]["wandb"]["name"].endswith("/trainer.max_steps=4")
