"""Stop cleanly on SIGTERM or SIGUSR1: finish the current batch, save ``last.ckpt``, exit.

Lightning already turns a SIGTERM into a stop at the end of the current batch, on every rank
(it raises ``SIGTERMException``). This callback completes that into a preemption policy:

* **a checkpoint at the stop**: ``last.ckpt`` is saved in the ``ModelCheckpoint`` folder when the
  stop comes, through the trainer (so through the atomic ``CheckpointIO``), and recorded as that
  callback's ``last_model_path``;
* **SIGUSR1 outside SLURM** does what SIGTERM does (torchrun, a plain shell, a cluster that sends
  USR1 ahead of a time limit). On SLURM, Lightning's ``SLURMEnvironment(auto_requeue=True)``
  owns SIGUSR1 (it saves ``hpc_ckpt_N.ckpt`` and runs ``scontrol requeue``), and this callback
  leaves it alone: it only takes SIGUSR1 when nobody else handles it;
* **which signal it was**, for the command's exit status (128 + the signal's number).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class StopOnSignal(pl.Callback):
    """Save ``last.ckpt`` when SIGTERM (or SIGUSR1, see the module docstring) stops training.

    Args:
        fallback_dir: where ``last.ckpt`` goes when the trainer has no ``ModelCheckpoint``
            (the run directory's ``checkpoints/``).

    After the stop, ``signal_name`` is ``"SIGTERM"`` or ``"SIGUSR1"`` and ``saved`` the checkpoint
    written (None when nothing was trained yet, or training had not started).
    """

    def __init__(self, fallback_dir: str | os.PathLike | None = None):
        super().__init__()
        self.fallback_dir = Path(fallback_dir) if fallback_dir is not None else None
        self.signal_name: str | None = None
        self.saved: Path | None = None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by the signal: 128 + its number."""
        number = getattr(signal, self.signal_name or "SIGTERM")
        return 128 + int(number)

    def _forward_sigusr1(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = "SIGUSR1"
        log.info("received SIGUSR1: stopping after this batch, as for SIGTERM")
        # Lightning's SIGTERM handler flags the stop (and tells the other ranks / child processes).
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signal.SIGTERM, frame)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning registered its handlers just before and restores the ones it found at teardown,
        # which also takes this one down again.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGUSR1, self._forward_sigusr1)

    def _last_path(self, trainer: pl.Trainer) -> tuple[Path, ModelCheckpoint | None]:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
                return Path(callback.dirpath) / name, callback
        folder = self.fallback_dir or Path(trainer.default_root_dir) / "checkpoints"
        return folder / "last.ckpt", None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.signal_name = self.signal_name or "SIGTERM"
        if trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0 or trainer.sanity_checking:
            return  # nothing trained yet: a restart loses nothing
        path, callback = self._last_path(trainer)
        if callback is not None:
            # Part of the saved state, as ModelCheckpoint itself does before writing last.ckpt.
            callback.last_model_path = str(path)
        trainer.save_checkpoint(path)
        self.saved = path
        log.info("%s: saved %s at step %d", self.signal_name, path, trainer.global_step)
