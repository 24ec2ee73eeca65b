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
