"""One W&B run per training run, whatever happens to the process.

The W&B run id is chosen once, when a run starts with nothing to continue, and kept with the run:
in ``<run>/wandb_run.json`` and in every checkpoint (``checkpoint["wandb_run_id"]``). A run that
starts again (a resume from a run directory or a checkpoint, a requeued SLURM job, a restarted
DDP rank, a requeued sweep member) finds it there and logs into the same W&B run with
``resume="allow"``, Lightning's idiom for continuing a run. Where the id comes from, first match:

1. ``logger.wandb.id`` when set;
2. the checkpoint training resumes from;
3. the run directory's ``wandb_run.json`` (a run stopped before its first checkpoint);
4. a new id.

W&B's own step is the trainer's step (Lightning's logging step: the number of training batches
that stepped before the one logged), and :class:`ContinuingWandbLogger` never logs a step twice:
it records the last step it logged in ``wandb_run.json`` and a run that starts again skips what
the killed process had already logged (the steps between its last checkpoint and the kill are
trained again, with the same numbers when the resume is exact). Only global rank 0 talks to W&B.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)

#: The run directory's record of its W&B run: ``{"id": str, "last_step": int | null}``.
RUN_RECORD = "wandb_run.json"
#: Where every checkpoint keeps the id of the W&B run that trained it.
CHECKPOINT_KEY = "wandb_run_id"
#: W&B's alphabet and length for run ids (``wandb.util.generate_id``), without importing wandb.
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class RunRecord:
    """What ``<run>/wandb_run.json`` says: the W&B run's id and the last step logged to it."""

    id: str
    last_step: int | None = None


def read_record(folder: str | os.PathLike) -> RunRecord | None:
    """The record in ``folder``, or None when there is none (or it is unreadable)."""
    path = Path(folder) / RUN_RECORD
    try:
        data = json.loads(path.read_text())
        last = data.get("last_step")
        return RunRecord(id=str(data["id"]), last_step=None if last is None else int(last))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(folder: str | os.PathLike, record: RunRecord) -> None:
    """Write the record atomically (a reader sees the old one or the new one, never half)."""
    path = Path(folder) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUN_RECORD}.tmp")
    tmp.write_text(json.dumps({"id": record.id, "last_step": record.last_step}) + "\n")
    os.replace(tmp, path)


def checkpoint_run_id(path: str | os.PathLike) -> str | None:
    """The W&B run id a gmrw checkpoint was trained under, or None (older files, other loggers,
    a file this loader cannot read: resuming reports those itself)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:
        log.warning("cannot read the W&B run id of %s: %s", path, error)
        return None
    value = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    return str(value) if value else None


def new_run_id() -> str:
    """A fresh id in W&B's format (8 characters of ``[a-z0-9]``)."""
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in os.urandom(8))


@dataclass(frozen=True)
class WandbRunChoice:
    """The W&B run a training run logs into: ``id``, where it came from (``source``, for the log),
    and the last step already logged to it (``logged_through``; None when nothing was)."""

    id: str
    source: str
    logged_through: int | None


def _record_of_checkpoint(checkpoint: Path, run_id: str) -> RunRecord | None:
    """The record of the run that wrote ``checkpoint``: it sits at the top of the run directory,
    beside ``hpc_ckpt_N.ckpt`` and above ``checkpoints/``."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        record = read_record(folder)
        if record is not None and record.id == run_id:
            return record
    return None


def choose_wandb_run(
    output_dir: str | os.PathLike, resume_from: str | None, explicit_id: str | None = None
) -> WandbRunChoice:
    """Which W&B run this training run logs into (the module docstring gives the order)."""
    output_dir = Path(output_dir)
    own = read_record(output_dir)
    if explicit_id:
        run_id, source = str(explicit_id), "logger.wandb.id"
    elif resume_from and (stamped := checkpoint_run_id(resume_from)):
        run_id, source = stamped, f"checkpoint {resume_from}"
    elif own is not None:
        run_id, source = own.id, f"{output_dir / RUN_RECORD}"
    else:
        return WandbRunChoice(new_run_id(), "new", None)
    record = own if own is not None and own.id == run_id else None
    if record is None and resume_from:
        record = _record_of_checkpoint(Path(resume_from), run_id)
    return WandbRunChoice(run_id, source, record.last_step if record else None)


def launch_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's global rank as its launcher set it, before any trainer exists: the
    variables Lightning reads for ``rank_zero_only.rank`` (torchrun, Lightning's own launcher,
    SLURM, LSF), read now rather than when Lightning was imported (a submitit_local task sets
    them itself, after importing it)."""
    env = os.environ if environ is None else environ
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if env.get(key, "").strip():
            return int(env[key])
    return 0


class ContinuingWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` that continues one W&B run across restarts.

    * W&B's step is the step Lightning logs at, so a resumed run's history continues where its
      checkpoint left it and W&B itself refuses a step that goes back;
    * steps up to ``logged_through`` (already in this W&B run, logged by a process that was
      killed after its last checkpoint) are not logged again;
    * the last step logged is kept in ``<record_dir>/wandb_run.json`` for the next restart.

    Args:
        logged_through: the last step this W&B run already holds; None: nothing yet.
        record_dir: the run directory whose record to keep up to date; None: keep none.
        *args, **kwargs: ``WandbLogger``'s (``id``, ``project``, ``entity``, ``group``, ...).
    """

    def __init__(
        self, *args: Any, logged_through: int | None = None, record_dir: str | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.logged_through = logged_through
        self.record_dir = Path(record_dir) if record_dir else None
        self._last_step = logged_through
        self._skipped = 0

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is None:
            super().log_metrics(metrics, step)
            return
        step = int(step)
        if self.logged_through is not None and step <= self.logged_through:
            if not self._skipped:
                log.info(
                    "W&B run %s already holds steps up to %d: not logging them again",
                    self.version,
                    self.logged_through,
                )
            self._skipped += 1
            return
        self.experiment.log({**metrics, "trainer/global_step": step}, step=step)
        if self.record_dir is not None and (self._last_step is None or step > self._last_step):
            self._last_step = step
            write_record(self.record_dir, RunRecord(id=str(self.version), last_step=step))

    @rank_zero_only
    def finish(self, exit_code: int = 0) -> None:
        """End this process's part of the W&B run (it continues when the run starts again). A
        later trainer in this process then starts its own W&B run instead of reusing this one, and
        this logger, used again, resumes its run."""
        if self._experiment is not None and hasattr(self._experiment, "finish"):
            self._experiment.finish(exit_code=exit_code)
            self._experiment = None


class WandbRunKeeper(pl.Callback):
    """Stamps the W&B run id into every checkpoint, and ends this process's W&B run when
    fitting ends or stops (the SIGTERM of a preemption included)."""

    def __init__(self, run_id: str | None, loggers: list[Logger]):
        super().__init__()
        self.run_id = run_id
        self.loggers = [lg for lg in loggers if isinstance(lg, ContinuingWandbLogger)]

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.run_id:
            checkpoint[CHECKPOINT_KEY] = self.run_id

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            for logger in self.loggers:
                logger.finish(exit_code=0)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        for logger in self.loggers:
            logger.finish(exit_code=1)


def instantiate_loggers(
    group: DictConfig | None, output_dir: str | os.PathLike, resume_from: str | None
) -> tuple[list[Logger], list[pl.Callback]]:
    """Instantiate the ``logger`` group; a W&B logger gets the run's W&B id (:func:`choose_wandb_run`,
    on global rank 0, which writes ``wandb_run.json`` at once so that a run stopped before its first
    checkpoint keeps its id). Returns the loggers and the callbacks that keep the id with the run."""
    loggers: list[Logger] = []
    callbacks: list[pl.Callback] = []
    for entry in (group or {}).values():
        if entry is None or "_target_" not in entry:
            continue
        target = hydra.utils.get_class(entry._target_)
        if not issubclass(target, WandbLogger):
            loggers.append(hydra.utils.instantiate(entry))
            continue
        run_id = entry.get("id")
        extra: dict[str, Any] = {}
        if launch_rank() == 0:
            choice = choose_wandb_run(output_dir, resume_from, run_id)
            log.info("W&B run %s (%s)", choice.id, choice.source)
            write_record(output_dir, RunRecord(choice.id, choice.logged_through))
            run_id = choice.id
            if issubclass(target, ContinuingWandbLogger):
                extra = {"logged_through": choice.logged_through, "record_dir": str(output_dir)}
        logger = hydra.utils.instantiate(entry, id=run_id, **extra)
        loggers.append(logger)
        callbacks.append(WandbRunKeeper(run_id, [logger]))
    return loggers, callbacks
