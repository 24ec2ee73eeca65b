"""``summary.json``: what a script needs to know about a finished run, in one small file."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def _as_number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


class RunSummary(pl.Callback):
    """Writes ``<output_dir>/summary.json`` on global rank 0 when fitting ends (or fails):

    ``{"first": {metric: value}, "last": {metric: value}, "steps": int, "wall_time_s": float,
    "last_checkpoint": str | null, "status": "finished" | "failed" | "interrupted"}``

    "first" is the first value ever logged for each metric (validation before training gives the
    untrained model's ``val/aj``); "last" is its latest value.
    """

    def __init__(self, output_dir: str, filename: str = "summary.json"):
        super().__init__()
        self.path = Path(output_dir) / filename
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._start = time.monotonic()

    def _record(self, trainer: pl.Trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            number = _as_number(value)
            if number is None:
                continue
            self.first.setdefault(key, number)
            self.last[key] = number

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._record(trainer)
        self.write(trainer, status="finished")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # SIGTERMException: a SIGTERM / SIGUSR1 stop (gmrw.callbacks.preemption), not a failure.
        stopped = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        try:
            self.write(trainer, status="interrupted" if stopped else "failed")
        except OSError as err:
            # A full disk: the exception being handled says more than this one would.
            log.warning("could not write %s: %s", self.path, err)

    @rank_zero_only
    def write(self, trainer: pl.Trainer, status: str) -> None:
        last_checkpoint = None
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.last_model_path:
                last_checkpoint = str(Path(callback.last_model_path).resolve())
        summary = {
            "status": status,
            "first": dict(sorted(self.first.items())),
            "last": dict(sorted(self.last.items())),
            "steps": int(trainer.global_step),
            "wall_time_s": round(time.monotonic() - self._start, 3),
            "last_checkpoint": last_checkpoint,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, self.path)
