"""``train(cfg)``: from a composed ``train`` config to a trained run directory.

Builds the datamodule, the module and the trainer from the config, resumes where the run
directory (or ``ckpt_path``) says, and turns preemption and full disks into one-line errors.

Preemption: checkpoints are written atomically (:mod:`gmrw.checkpoint.write`); SIGTERM or
SIGUSR1 saves ``last.ckpt`` and stops with :class:`TrainingStopped` (exit code 128 + the signal's
number; :mod:`gmrw.callbacks.preemption`); a run whose directory already holds checkpoints (a
requeued SLURM job, a restarted torchrun, ``GMRW_RUN_NAME`` reused) resumes from the newest intact one.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gmrw.callbacks.preemption import StopOnSignal
from gmrw.callbacks.summary import RunSummary
from gmrw.checkpoint.choose import (
    CheckpointChoice,
    CheckpointProblem,
    choose_checkpoint,
    newest_intact_checkpoint,
    unfinished_write_note,
)
from gmrw.checkpoint.layout import unfinished_writes
from gmrw.checkpoint.write import CheckpointWriteError
from gmrw.choices import ConfigError
from gmrw.models.cpu import slow_bf16_warning
from gmrw.training.config_checks import check_train_config
from gmrw.training.wandb_run import instantiate_loggers

log = logging.getLogger("gmrw.train")


class TrainingStopped(Exception):
    """Training stopped on SIGTERM / SIGUSR1; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _describe(choice: CheckpointChoice) -> str:
    step = f" (step {choice.step})" if choice.step is not None else ""
    return f"{choice.path.resolve()}{step}"


def resolve_ckpt_path(ckpt_path: str | None) -> str | None:
    """A checkpoint file (checked), or a run directory's newest intact checkpoint; None stays None.

    Newer files that are damaged or truncated are skipped, each named in a warning.
    """
    if not ckpt_path:
        return None
    choice = choose_checkpoint(str(ckpt_path), "ckpt_path", training=True)
    log.info("resuming from %s", _describe(choice))
    return str(choice.path.resolve())


def resume_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """What ``trainer.fit`` resumes from.

    The run directory's own checkpoints come first: they exist when this very run was stopped
    and started again (a requeued SLURM job, a restarted torchrun, the same ``GMRW_RUN_NAME``),
    and are newer than any ``ckpt_path`` the command names as its starting point. Then
    ``ckpt_path``; otherwise a fresh start. ``auto_resume=false`` ignores the run's own.
    """
    if cfg.get("auto_resume", True):
        try:
            own = newest_intact_checkpoint(output_dir)
        except CheckpointProblem as error:
            raise ConfigError(f"{error}; pass auto_resume=false to start this run over") from None
        if own is None:
            for leftover in unfinished_writes(output_dir):
                log.warning("%s", unfinished_write_note(leftover))
        else:
            note = f" instead of ckpt_path={cfg.ckpt_path}" if cfg.get("ckpt_path") else ""
            for line in own.report():
                log.warning("%s", line)
            log.info("this run directory already holds checkpoints: resuming from %s%s", _describe(own), note)
            # Lightning warns about writing into a folder with checkpoints: here that is the point.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            return str(own.path.resolve())
    return resolve_ckpt_path(cfg.get("ckpt_path"))


def _find_in_chain(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``error`` or the first exception of type ``kind`` it was raised while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers)."""
    if not group:
        return []
    return [
        hydra.utils.instantiate(entry)
        for entry in group.values()
        if entry is not None and "_target_" in entry
    ]


def validate_config(cfg: DictConfig) -> None:
    """Fail early, with a message naming the problem, before anything slow starts."""
    if cfg.get("require_init_from") and not cfg.model.get("init_from") and not cfg.get("ckpt_path"):
        raise ConfigError(
            f"model.init_from is required for task {cfg.get('task_name')}: pass the checkpoint to start "
            "from, e.g. model.init_from=runs/kinetics/<run>/checkpoints/last.ckpt or kinetics_144k.pth"
        )
    if cfg.model.get("init_from") and not Path(cfg.model.init_from).expanduser().is_file():
        raise ConfigError(f"model.init_from={cfg.model.init_from}: no such file")
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} but no CUDA GPU is visible: add trainer=cpu "
                "(one process) or trainer=ddp_sim (two CPU processes) to run on the CPU"
            )
    if cfg.trainer.get("max_steps", -1) is None or int(cfg.trainer.get("max_steps", -1)) <= 0:
        if not cfg.trainer.get("fast_dev_run"):
            raise ConfigError("trainer.max_steps must be a positive number of optimisation steps")
    check_train_config(cfg)  # required values, named choices, the dataset folder


def train(cfg: DictConfig) -> dict:
    """Run one training job from a composed config; returns the summary written to summary.json.

    Raises ConfigError (settings that cannot work, no usable checkpoint), CheckpointWriteError (a
    full disk) or TrainingStopped (SIGTERM / SIGUSR1)."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_path(cfg, output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model)
    if cfg.model.get("init_from") and ckpt_path is None:
        log.info("initialising weights from %s", cfg.model.init_from)
        module.load_pretrained(str(Path(cfg.model.init_from).expanduser()))

    callbacks = _instantiate_group(cfg.get("callbacks"))
    # First, so that its checkpoint on SIGTERM is on disk before RunSummary names it.
    stopper = StopOnSignal(output_dir / "checkpoints")
    callbacks.insert(0, stopper)
    if not any(isinstance(c, RunSummary) for c in callbacks):
        callbacks.append(RunSummary(str(output_dir)))
    # A W&B logger continues the run's own W&B run (gmrw.training.wandb_run).
    loggers, logger_callbacks = instantiate_loggers(cfg.get("logger"), output_dir, ckpt_path)
    callbacks.extend(logger_callbacks)
    if not loggers:
        # LearningRateMonitor refuses a logger-less trainer (there is nothing to log the rate to).
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    max_steps = trainer_cfg.get("max_steps", -1)
    interval = trainer_cfg.get("val_check_interval")
    if isinstance(interval, int) and max_steps and max_steps > 0 and interval > max_steps:
        # Lightning raises when the interval exceeds the (single, run-long) epoch.
        trainer_cfg["val_check_interval"] = max_steps
    trainer: pl.Trainer = hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, _convert_="partial"
    )
    # Rank 0 only (the probe times matmuls), on what the Trainer resolved ("auto", "bf16" aliases).
    if trainer.is_global_zero and (
        slow_bf16 := slow_bf16_warning(trainer.strategy.root_device.type, trainer.precision)
    ):
        log.warning(slow_bf16)

    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    try:
        if cfg.get("validate_before_training", True) and ckpt_path is None and not trainer.fast_dev_run:
            trainer.validate(module, datamodule=datamodule)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        name = stopper.signal_name or "SIGTERM"
        if stopper.saved is not None:
            done = f"saved {stopper.saved} at step {trainer.global_step}; resume with ckpt_path={output_dir}"
        else:
            done = "before the first training step, nothing to save"
        raise TrainingStopped(f"stopped by {name}: {done}", stopper.exit_code) from None
    except BaseException as error:
        # A full disk also fails the log and summary writes that follow; report the checkpoint's.
        cause = _find_in_chain(error, CheckpointWriteError)
        if cause is None:
            raise
        raise cause from None

    summary_path = output_dir / "summary.json"
    if trainer.is_global_zero and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        log.info("summary: %s", summary_path)
        return summary
    return {}
