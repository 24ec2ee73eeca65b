"""``gmrw-train``: compose the Hydra config, build the datamodule, module and trainer, train.

Lightning's DDP re-runs this console script once per extra local rank and pins
``hydra.run.dir`` to rank 0's, so every rank shares one run directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gmrw.paths import config_dir

log = logging.getLogger("gmrw.train")


class ConfigError(ValueError):
    """A configuration value that cannot work, with a message saying why."""


def resolve_ckpt_path(ckpt_path: str | None) -> str | None:
    """A checkpoint file, or a run directory whose ``checkpoints/last.ckpt`` to resume."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.ckpt"
        if not candidate.is_file():
            raise ConfigError(f"ckpt_path={ckpt_path} is a directory without checkpoints/last.ckpt")
        path = candidate
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(path.resolve())


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
    for key in ("root",):
        if key in cfg.data and OmegaConf.is_missing(cfg.data, key):
            raise ConfigError(
                f"data.{key} is required for data={cfg.data._target_.rsplit('.', 1)[-1]}: "
                f"pass the dataset location, e.g. data.{key}=/path/to/dataset"
            )
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} but no CUDA GPU is visible: add trainer=cpu "
                "(one process) or trainer=ddp_sim (two CPU processes) to run on the CPU"
            )
    if cfg.trainer.get("max_steps", -1) is None or int(cfg.trainer.get("max_steps", -1)) <= 0:
        if not cfg.trainer.get("fast_dev_run"):
            raise ConfigError("trainer.max_steps must be a positive number of optimisation steps")


def train(cfg: DictConfig) -> dict:
    """Run one training job from a composed config; returns the summary written to summary.json."""
    import pytorch_lightning as pl
    import torch

    from gmrw.callbacks.summary import RunSummary

    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"))
    if cfg.model.get("init_from") and ckpt_path is None:
        log.info("initialising weights from %s", cfg.model.init_from)
        module.load_pretrained(str(Path(cfg.model.init_from).expanduser()))

    callbacks = _instantiate_group(cfg.get("callbacks"))
    if not any(isinstance(c, RunSummary) for c in callbacks):
        callbacks.append(RunSummary(str(output_dir)))
    loggers = _instantiate_group(cfg.get("logger"))
    if not loggers:
        # LearningRateMonitor refuses a logger-less trainer; the lr is still in summary.json
        # (the module logs train/lr itself).
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

    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("validate_before_training", True) and ckpt_path is None and not trainer.fast_dev_run:
        trainer.validate(module, datamodule=datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    summary_path = output_dir / "summary.json"
    if trainer.is_global_zero and summary_path.is_file():
        import json

        summary = json.loads(summary_path.read_text())
        log.info("summary: %s", summary_path)
        return summary
    return {}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    # Keep TensorFlow (Kubric reader) off GPUs and quiet, whatever the dataset.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        train(cfg)
    except ConfigError as error:
        log.error("%s", error)
        raise SystemExit(f"gmrw-train: {error}") from None


if __name__ == "__main__":
    main()
