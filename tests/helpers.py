"""Test helpers: the real Hydra configs composed as the console scripts do (:func:`gmrw.paths.compose_config`), console scripts run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from gmrw.paths import compose_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: The smallest training run that still trains the real model (tiny network, 32x32 world, no loader
#: workers); tests add their own callbacks, logger and steps.
TINY_RUN = [
    "model.net.feature_channels=16",
    "model.net.num_transformer_layers=1",
    "model.net.ffn_dim_expansion=1",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.train_set.frame_size=[32,32]",
    "data.train_set.img_size1=[32,32]",
    "data.train_set.img_size2=[32,32]",
    "data.train_set.texture_bank=4",
]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The composed ``train`` config (see :func:`gmrw.paths.compose_config`)."""
    return compose_config("train", overrides, output_dir)


def run_console(script: str, args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None):
    """Run an installed console script (``gmrw-train`` ...) as a user would."""
    full_env = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def signal_at_step(step: int, signum: int):
    """A Lightning callback (``_target_: helpers.signal_at_step`` in a config) that sends this
    process ``signum`` when the trainer has finished optimisation step ``step``: a preemption at
    an exact moment."""
    import signal

    import pytorch_lightning as pl

    class SignalAtStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == step:
                signal.raise_signal(signum)

    return SignalAtStep()


def read_wandb_log(path: Path) -> dict:
    """A ``.wandb`` transaction log read back with wandb's own reader (``wandb leet inspect
    --json``): ``{"run_id": str, "steps": [int, ...] (history rows in order), "keys": {step: set of
    keys logged at it}, "config": dict (the run's config, merged), "media": [paths of logged files]}``."""
    import json

    import pytest

    result = subprocess.run(
        [str(BIN / "wandb"), "leet", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 and "No such command" in result.stderr:
        pytest.skip("this wandb has no `wandb leet inspect` to read .wandb files back")
    assert result.returncode == 0, result.stderr[-2000:]
    out = {"run_id": None, "steps": [], "keys": {}, "config": {}, "media": []}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        kind = record["type"]
        if kind == "run":
            out["run_id"] = record["run"]["run_id"]
        elif kind == "history":
            step = int(record["history"].get("step", {}).get("num", 0))
            out["steps"].append(step)
            out["keys"].setdefault(step, set()).update(record["history"]["item"])
        elif kind == "config":
            out["config"].update(record["config"].get("update", {}))
        elif kind == "files":
            out["media"] += [f["path"] for f in record["files"]["files"] if f["path"].startswith("media/")]
    return out


def wandb_logs(run_dir: Path) -> list[dict]:
    """Every W&B log under ``<run_dir>/wandb``, oldest first (:func:`read_wandb_log`)."""
    return [read_wandb_log(p) for p in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))]
