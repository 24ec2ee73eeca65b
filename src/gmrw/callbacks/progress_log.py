"""A progress line every N training steps when stdout is not a terminal.

The rich progress bar draws nothing into a file or a pipe (SLURM logs, CI, ``nohup``), so there a
run shows nothing between the model summary and its end. :class:`ProgressLog` logs instead::

    step 40/160 (25%) · loss 1.2345 · 1.85 s/step · ETA 0:03:42

on global rank 0, through the ``gmrw.train`` logger (the console and the run's log file).
"""

from __future__ import annotations

import logging
import sys
import time

import pytorch_lightning as pl
import torch

from gmrw.choices import check_choice

log = logging.getLogger("gmrw.train")

#: When the lines are written: stdout not a terminal (auto), always, or never.
PROGRESS_LOG_WHEN = ("auto", "always", "never")


class ProgressLog(pl.Callback):
    """Logs step, mean training loss, seconds per step and time left every ``every_n_steps``
    optimisation steps (and at the last step).

    Seconds per step are measured over the steps since the previous line, data loading included
    and validation rounds left out; the ETA is the remaining steps at that pace (validation rounds
    still to come not counted). The loss is the mean of the training steps' losses since the
    previous line, as this rank computed them.

    Args:
        every_n_steps: optimisation steps between two lines.
        when: ``"auto"`` (only when stdout is not a terminal, where the progress bar shows
            nothing), ``"always"`` or ``"never"``.
    """

    def __init__(self, every_n_steps: int = 20, when: str = "auto"):
        super().__init__()
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        check_choice(when, PROGRESS_LOG_WHEN, "progress log setting 'when'")
        self.every_n_steps = every_n_steps
        self.when = when
        self.enabled = False
        self._reset(step=0)

    def _reset(self, step: int) -> None:
        self.window_step = step
        self.window_start = time.perf_counter()
        self.paused_s = 0.0  # validation time inside the current window
        self.validation_start: float | None = None
        self.loss_sum: torch.Tensor | None = None  # summed on the loss's device: no sync per step
        self.loss_count = 0

    def wanted(self) -> bool:
        """Whether this process writes lines (before the rank is considered)."""
        if self.when == "auto":
            return not sys.stdout.isatty()
        return self.when == "always"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enabled = trainer.is_global_zero and self.wanted()
        self._reset(step=trainer.global_step)  # a resumed run counts from its checkpoint's step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float()
            self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
            self.loss_count += 1
        step = trainer.global_step
        last = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if step > self.window_step and (step % self.every_n_steps == 0 or step == last):
            log.info("%s", self.line(step, last))
            self._reset(step)

    def line(self, step: int, last: int | None) -> str:
        """The progress line at ``step`` of ``last`` (None: open-ended), for the current window."""
        seconds = (time.perf_counter() - self.window_start - self.paused_s) / (step - self.window_step)
        parts = [f"step {step}/{last} ({100 * step / last:.0f}%)" if last else f"step {step}"]
        if self.loss_count:
            parts.append(f"loss {float(self.loss_sum) / self.loss_count:.4f}")
        parts.append(f"{seconds:.3g} s/step")
        if last:
            parts.append(f"ETA {format_duration(seconds * (last - step))}")
        return " · ".join(parts)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.validation_start is not None:
            self.paused_s += time.perf_counter() - self.validation_start
            self.validation_start = None


def format_duration(seconds: float) -> str:
    """``H:MM:SS``, e.g. 222 s → ``0:03:42``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
