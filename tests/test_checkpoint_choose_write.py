"""Checkpoint files: damage detection, newest-intact choice, atomic writes, run names, resumable data."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from lightning_fabric.utilities.types import _Stateful
from omegaconf import OmegaConf

from gmrw.checkpoint import write as checkpoint_write
from gmrw.checkpoint.choose import (
    CheckpointProblem,
    check_checkpoint,
    newest_intact_checkpoint,
    resolve_checkpoint,
    weights_file,
)
from gmrw.checkpoint.layout import run_checkpoints, unfinished_writes
from gmrw.checkpoint.write import AtomicCheckpointIO, CheckpointWriteError, atomic_torch_save
from gmrw.choices import ConfigError
from gmrw.data.loaders import StepStreamSampler, training_loader
from gmrw.paths import run_name
from gmrw.training.run import resume_path


def _training_state(step: int, size: int = 4096) -> dict:
    """What a Lightning checkpoint holds, in small."""
    generator = torch.Generator().manual_seed(step)
    return {
        "global_step": step,
        "state_dict": {"model.w": torch.randn(size, generator=generator)},
        "loops": {"fit_loop": {}},
        "optimizer_states": [{"state": {}}],
    }


def _write(path: Path, step: int, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_training_state(step), path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run with checkpoints at steps 2 and 4 and last.ckpt (step 5), oldest to newest."""
    ckpts = tmp_path / "run" / "checkpoints"
    _write(ckpts / "step=0000002.ckpt", 2, mtime=1000)
    _write(ckpts / "step=0000004.ckpt", 4, mtime=2000)
    _write(ckpts / "last.ckpt", 5, mtime=3000)
    return tmp_path / "run"


def _truncate(path: Path, fraction: float = 0.4) -> None:
    data = path.read_bytes()
    stat = path.stat()
    path.write_bytes(data[: int(len(data) * fraction)])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as a kill mid-write leaves it: still newest


def _flip_byte_in_tensor_data(path: Path) -> None:
    data = bytearray(path.read_bytes())
    marker = data.find(b"model.w")  # inside the pickle; the tensor bytes follow later in the file
    assert marker > 0
    position = len(data) // 2
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_intact_checkpoint_passes_with_its_step(run_dir):
    check = check_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert check.intact and check.step == 5


def test_damage_is_named(run_dir, tmp_path):
    last = run_dir / "checkpoints" / "last.ckpt"
    _truncate(last)
    assert "truncated" in check_checkpoint(last).problem

    flipped = _write(tmp_path / "flipped.ckpt", 7)
    _flip_byte_in_tensor_data(flipped)
    # torch.load itself accepts this file: only the CRC of the tensor record shows the damage.
    torch.load(flipped, weights_only=True)
    assert "damaged" in check_checkpoint(flipped).problem and "CRC" in check_checkpoint(flipped).problem

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert check_checkpoint(empty).problem == "empty file"

    weights_only = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, weights_only)
    problem = check_checkpoint(weights_only).problem
    assert "holds no training state" in problem and "global_step" in problem

    not_a_dict = tmp_path / "list.ckpt"
    torch.save([torch.zeros(2)], not_a_dict)
    assert "not a Lightning checkpoint" in check_checkpoint(not_a_dict).problem


def test_newest_intact_skips_a_truncated_last_and_names_it(run_dir):
    _truncate(run_dir / "checkpoints" / "last.ckpt")
    choice = newest_intact_checkpoint(run_dir)
    assert choice.path.name == "step=0000004.ckpt" and choice.step == 4
    assert [c.path.name for c in choice.skipped] == ["last.ckpt"]
    (line,) = choice.report()
    assert "skipped" in line and "last.ckpt" in line and "truncated" in line


def test_newest_is_by_modification_time_and_includes_slurm_hpc_checkpoints(run_dir):
    hpc = _write(run_dir / "hpc_ckpt_1.ckpt", 6, mtime=4000)
    assert run_checkpoints(run_dir)[0] == hpc
    assert newest_intact_checkpoint(run_dir).path == hpc


def test_no_intact_checkpoint_names_every_file(run_dir):
    for path in run_checkpoints(run_dir):
        _truncate(path)
    with pytest.raises(CheckpointProblem, match="no intact checkpoint") as info:
        newest_intact_checkpoint(run_dir)
    for name in ("last.ckpt", "step=0000002.ckpt", "step=0000004.ckpt"):
        assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_resolve_explicit_file_and_directories(run_dir, tmp_path):
    last = run_dir / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(last).path == last
    assert resolve_checkpoint(run_dir).path == last
    _truncate(last)
    with pytest.raises(CheckpointProblem) as info:
        resolve_checkpoint(last)
    message = str(info.value)
    assert message.startswith(f"ckpt_path={last}: truncated") and "\n" not in message
    with pytest.raises(CheckpointProblem, match="no such checkpoint file"):
        resolve_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointProblem, match="directory without checkpoints"):
        resolve_checkpoint(tmp_path / "empty_run")
    assert newest_intact_checkpoint(tmp_path / "empty_run") is None


def test_weights_file_passes_files_through_and_picks_intact_in_directories(run_dir, tmp_path):
    paper = tmp_path / "paper.pth"
    paper.write_bytes(b"any format torch reads; the model loader judges it")
    assert weights_file(paper, "model.checkpoint").path == paper
    _truncate(run_dir / "checkpoints" / "last.ckpt")
    assert weights_file(run_dir, "model.checkpoint").path.name == "step=0000004.ckpt"
    with pytest.raises(CheckpointProblem, match="model.checkpoint=.*no such file"):
        weights_file(tmp_path / "nope.pth", "model.checkpoint")


# ------------------------------------------------------------------------------ atomic writes


def _fail_mid_write(errno_code: int):
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno_code, os.strerror(errno_code))

    return real_save, save


def test_disk_full_names_the_folder_and_keeps_the_old_file(run_dir, monkeypatch):
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    _, failing = _fail_mid_write(errno.ENOSPC)
    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(CheckpointWriteError) as info:
        AtomicCheckpointIO().save_checkpoint(_training_state(9), last)
    message = str(info.value)
    assert str(last.parent) in message and "No space left on device" in message and "last.ckpt" in message
    assert info.value.errno == errno.ENOSPC
    assert last.read_bytes() == before
    assert unfinished_writes(run_dir) == [], "the temporary file of a failed write is removed"


def test_write_killed_before_the_rename_leaves_the_old_file(run_dir):
    """A child process dies by SIGKILL after writing and fsyncing, just before its rename."""
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            checkpoint_write.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
            atomic_torch_save(_training_state(9), last)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert last.read_bytes() == before
    (partial,) = unfinished_writes(run_dir)
    assert partial.parent == last.parent and partial.stat().st_size > 0
    assert partial not in run_checkpoints(run_dir)
    choice = newest_intact_checkpoint(run_dir)
    assert choice.path == last and choice.step == 5
    assert any("unfinished checkpoint write" in line for line in choice.report())
    # The next write to that folder clears the leftover.
    atomic_torch_save(_training_state(10), last)
    assert unfinished_writes(run_dir) == [] and check_checkpoint(last).step == 10


def test_sigkill_at_random_moments_of_repeated_writes(tmp_path):
    """A writer overwriting one file in a loop, SIGKILLed at random moments: the file under the
    final name is always a whole checkpoint."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save(_training_state(0, size=1 << 18), target)
    rng = random.Random()
    for trial in range(5):
        pid = os.fork()
        if pid == 0:
            try:
                for step in itertools.count(1):
                    atomic_torch_save(_training_state(step, size=1 << 18), target)
            finally:
                os._exit(3)
        delay = rng.uniform(0.0, 0.3)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        check = check_checkpoint(target)
        assert check.intact, f"trial {trial}: kill after {delay:.3f} s left {target}: {check.problem}"
        state = torch.load(target, weights_only=True)
        expected = _training_state(state["global_step"], size=1 << 18)["state_dict"]["model.w"]
        assert torch.equal(state["state_dict"]["model.w"], expected)


def test_written_file_gets_the_usual_permissions(tmp_path):
    target = tmp_path / "x.ckpt"
    atomic_torch_save({"a": 1}, target)
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------------------ run names


def test_run_name_rules():
    assert run_name({"GMRW_RUN_NAME": "kinetics-a"}) == "kinetics-a"
    assert run_name({"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train"}) == "slurm-4242"
    array = {
        "SLURM_JOB_ID": "4250",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_JOB_NAME": "t",
    }
    assert run_name(array) == "slurm-4242_3"
    # An interactive allocation's shell is not a batch job: timestamps, as outside SLURM.
    stamp = run_name({"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "bash"})
    assert not stamp.startswith("slurm") and stamp[:2] == "20"
    assert run_name({}) != run_name({}), "two runs never share a timestamped directory"
    with pytest.raises(ValueError, match="one folder name"):
        run_name({"GMRW_RUN_NAME": "../elsewhere"})


# ------------------------------------------------------------------------------ resumable data


def test_training_loader_is_resumable_for_lightning():
    dataset = list(range(10))
    loader = training_loader(dataset, batch_size=2, num_workers=0, seed=3)
    assert isinstance(loader, _Stateful), "Lightning warns 'not resumable' for loaders without state_dict"
    assert loader.state_dict() == {
        "position": 0,
        "num_items": 10,
        "seed": 3,
        "shuffle": True,
        "world_size": 1,
    }


def test_sampler_state_resumes_the_stream_where_it_stood(caplog):
    consumed = {"n": 6}
    first = StepStreamSampler(12, seed=1, rank=1, world_size=2, start_fn=lambda: consumed["n"])
    state = first.state_dict()
    assert state["position"] == 6
    reference = list(itertools.islice(iter(StepStreamSampler(12, seed=1, rank=1, world_size=2)), 10))

    resumed = StepStreamSampler(12, seed=1, rank=1, world_size=2, start_fn=lambda: 0)
    with caplog.at_level(logging.INFO, logger="gmrw.data.loaders"):
        resumed.load_state_dict(state)
    assert "resumes exactly at sample 6" in caplog.text
    assert list(itertools.islice(iter(resumed), 4)) == reference[6:10]
    # Only the next iterator starts there; later ones follow the trainer's step again.
    assert next(iter(resumed)) == reference[0]

    caplog.clear()
    changed = StepStreamSampler(12, seed=2, rank=0, world_size=4)
    with caplog.at_level(logging.INFO, logger="gmrw.data.loaders"):
        changed.load_state_dict(state)
    assert (
        "stream changed" in caplog.text and "seed 1 → 2" in caplog.text and "world_size 2 → 4" in caplog.text
    )


# ------------------------------------------------------------------------------ what a run resumes from


def test_a_run_resumes_from_its_own_checkpoints_before_ckpt_path(run_dir, tmp_path):
    """A requeued job re-runs its command, ckpt_path included: its own, newer progress wins."""
    other = tmp_path / "other"
    _write(other / "checkpoints" / "last.ckpt", 9)
    cfg = OmegaConf.create({"ckpt_path": str(other), "auto_resume": True})
    assert resume_path(cfg, run_dir) == str((run_dir / "checkpoints" / "last.ckpt").resolve())
    assert resume_path(cfg, tmp_path / "fresh") == str((other / "checkpoints" / "last.ckpt").resolve())
    cfg.auto_resume = False
    assert resume_path(cfg, run_dir) == str((other / "checkpoints" / "last.ckpt").resolve())
    assert resume_path(OmegaConf.create({"ckpt_path": None}), tmp_path / "fresh") is None

    cfg.auto_resume = True
    for path in run_checkpoints(run_dir):
        _truncate(path)
    with pytest.raises(
        ConfigError, match="no intact checkpoint in .*auto_resume=false to start this run over"
    ):
        resume_path(cfg, run_dir)
