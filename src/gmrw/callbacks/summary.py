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

    ``{"first": {metric: value}, "last": {metric: value}, "history": {metric: [[step, value], ...]},
    "steps": int, "wall_time_s": float, "last_checkpoint": str | null,
    "status": "finished" | "failed" | "interrupted"}``

    "first" is the first value ever logged for each metric (validation before training gives the
    untrained model's ``val/aj``); "last" is its latest value. "history" holds every validation
    metric at every validation, and the training metrics every ``log_every_n_steps`` steps: enough
    to plot learning curves without a logger.
    """

    def __init__(self, output_dir: str, filename: str = "summary.json"):
        super().__init__()
        self.path = Path(output_dir) / filename
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.history: dict[str, list[list[float]]] = {}
        self._start = time.monotonic()

    def _record(self, trainer: pl.Trainer, history: str | None = None) -> None:
        """Remember the current metrics; those whose names start with ``history`` (``"train/"``,
        or ``""`` for all) also go into the history at this step."""
        for key, value in trainer.callback_metrics.items():
            number = _as_number(value)
            if number is None:
                continue
            self.first.setdefault(key, number)
            self.last[key] = number
            if history is not None and key.startswith(history):
                self.history.setdefault(key, []).append([int(trainer.global_step), number])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        self._record(trainer, history="train/" if trainer.global_step % every == 0 else None)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self._record(trainer)
        # Only the metrics this validation produced (callback_metrics also holds training ones).
        for key, value in trainer.callback_metrics.items():
            number = _as_number(value)
            if number is not None and not key.startswith("train/"):
                self.history.setdefault(key, []).append([int(trainer.global_step), number])

    # The history survives a resume: Lightning keeps a callback's state in its checkpoints.
    def state_dict(self) -> dict[str, Any]:
        return {"first": dict(self.first), "last": dict(self.last), "history": dict(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first = dict(state_dict.get("first", {}))
        self.last = dict(state_dict.get("last", {}))
        self.history = {k: [list(p) for p in v] for k, v in state_dict.get("history", {}).items()}

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
            "history": dict(sorted(self.history.items())),
            "steps": int(trainer.global_step),
            "wall_time_s": round(time.monotonic() - self._start, 3),
            "last_checkpoint": last_checkpoint,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, self.path)
