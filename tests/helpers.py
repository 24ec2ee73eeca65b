"""Test helpers: compose the real Hydra configs the way the console scripts do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from gmrw.paths import config_dir

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def compose_config(config_name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The composed ``config_name`` config (``train``, ``eval``) for ``overrides``, with the run
    directory set to ``output_dir`` as Hydra's launcher would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        # The composed hydra node is read-only; a test stands in for the launcher that sets it.
        with read_write(cfg), open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        # The task function of a real run never sees the hydra node; neither does a test.
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    return cfg


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The composed ``train`` config (see :func:`compose_config`)."""
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
