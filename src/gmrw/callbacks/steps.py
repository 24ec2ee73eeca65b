"""The step a callback's pictures are logged at, so they line up with the trainer's metrics."""

from __future__ import annotations

import pytorch_lightning as pl


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning's loggers file the current metrics under: the number of training batches
    that stepped the optimiser before the current one (0 before training).

    ``trainer.global_step`` is one ahead of it inside a training batch's end hooks and during a
    validation within fit: media logged at ``global_step`` would land one row after the metrics they
    illustrate, and a logger whose step must not go back (W&B) would then refuse those metrics.
    Lightning's own ``LearningRateMonitor`` reads the same counter.
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
