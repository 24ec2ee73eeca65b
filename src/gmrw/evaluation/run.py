"""``evaluate(cfg)``: from a composed ``eval`` config to ``<run>/metrics.json``.

Every video is tracked with :func:`gmrw.track` inside ``Trainer.test``: the TAP-Vid datamodule
gives rank r of W the videos r, r + W, … (no padding), and :class:`gmrw.metrics.TapVidMetric`
gathers one row per video from every rank. Global rank 0 writes ``metrics.json`` (benchmark
means, one row per video, and the settings that produced them, including the first-mode rule),
atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from gmrw import __version__
from gmrw.checkpoint import CheckpointError, choose_checkpoint, load_model
from gmrw.choices import (
    ATTENTION_TYPES,
    FIRST_MODE_RULES,
    QUERY_MODES,
    TAPVID_FORMATS,
    ConfigError,
    check_choice,
)
from gmrw.data.readers.tapvid import expected_layout
from gmrw.evaluation.module import TapVidEvaluation
from gmrw.models import flush_denormals
from gmrw.models.cpu import slow_bf16_warning
from gmrw.tracking import resolve_options

log = logging.getLogger("gmrw.eval")


def validate_config(cfg: DictConfig) -> None:
    """Fail early, with a message naming the problem, before anything slow starts."""
    if OmegaConf.is_missing(cfg.model, "checkpoint"):
        raise ConfigError(
            "model.checkpoint is required: the paper's .pth, a gmrw .ckpt or run directory, "
            "or model.checkpoint=null for random weights (a smoke run)"
        )
    if OmegaConf.is_missing(cfg.data, "path") or not cfg.data.get("path"):
        raise ConfigError(
            f"data.path is required for data format {cfg.data.get('format')}: pass the dataset location, "
            "e.g. data.path=/data/tapvid_davis/tapvid_davis.pkl"
        )
    check_choice(cfg.data.get("format"), TAPVID_FORMATS, "data.format")
    check_choice(cfg.data.get("query_mode", "first"), QUERY_MODES, "data.query_mode")
    if not Path(str(cfg.data.path)).expanduser().exists():
        raise ConfigError(
            f"data.path={cfg.data.path}: no such file or folder ({cfg.data.format}: "
            f"{expected_layout(cfg.data.format)})"
        )
    check_choice(
        str(cfg.model.net.get("attention_type") or "swin"), ATTENTION_TYPES, "model.net.attention_type"
    )
    try:
        resolve_options(None, **tracking_options(cfg))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"tracking: {error}") from None
    check_choice(cfg.metrics.query_mode, QUERY_MODES, "metrics.query_mode")
    check_choice(cfg.metrics.first_mode_rule, FIRST_MODE_RULES, "metrics.first_mode_rule")
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible: use trainer=default (CPU)"
        )


def tracking_options(cfg: DictConfig) -> dict[str, Any]:
    """The config's gmrw.track options that say how to track (null: the checkpoint's default)."""
    options = OmegaConf.to_container(cfg.tracking, resolve=True)
    options.pop("pair_batch_size", None)
    return options


def net_overrides(cfg: DictConfig) -> dict[str, Any]:
    """``model.net`` values that are set (null keeps the checkpoint's)."""
    return {k: v for k, v in OmegaConf.to_container(cfg.model.net, resolve=True).items() if v is not None}


def load_eval_model(cfg: DictConfig, checkpoint: str | None) -> torch.nn.Module:
    """The model to score: ``checkpoint`` (a resolved file, or None) with ``model.net`` overrides."""
    if checkpoint is None:
        log.warning("model.checkpoint=null: random weights; the scores say nothing about GMRW")
    try:
        return load_model(checkpoint, **net_overrides(cfg))
    except CheckpointError as error:
        raise ConfigError(f"model.checkpoint={cfg.model.checkpoint}: {error}") from None


def settings(
    cfg: DictConfig, checkpoint: str | None, world_size: int, tracking: dict[str, Any]
) -> dict[str, Any]:
    """What produced the scores, as written into metrics.json (``tracking``: the options used,
    the checkpoint's defaults filled in)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {
        "checkpoint": checkpoint,
        "dataset": {k: data.get(k) for k in ("format", "path", "query_mode", "resolution", "max_videos")},
        "tracking": tracking,
        "metrics": {
            "query_mode": cfg.metrics.query_mode,
            # The rule only changes anything in first mode; recorded either way, marked as such.
            "first_mode_rule": cfg.metrics.first_mode_rule,
            "first_mode_rule_applies": cfg.metrics.query_mode == "first",
            "scale": "fractions in [0, 1] (the paper's tables show ×100)",
        },
        "model_net_overrides": net_overrides(cfg),
        "world_size": world_size,
        "precision": str(cfg.trainer.get("precision")),
        "accelerator": str(cfg.trainer.get("accelerator")),
    }


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate(cfg: DictConfig) -> dict:
    """Run one evaluation from a composed config; returns the report written to metrics.json
    (on global rank 0; other ranks return ``{}``). Raises ConfigError for settings that cannot work."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    # Global-matching softmaxes produce float32 denormals that x86 CPUs process in slow microcode
    # (gmrw.models.cpu); GPU kernels are unaffected.
    flush_denormals(True)

    checkpoint = None
    if cfg.model.checkpoint is not None:
        checkpoint = str(choose_checkpoint(str(cfg.model.checkpoint), "model.checkpoint").path.resolve())
    datamodule = hydra.utils.instantiate(cfg.data)
    # The dataset's index is read now: a file that is not the benchmark fails before the model
    # is built.
    try:
        datamodule.setup("test")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"data.path={cfg.data.path}: {error}") from None
    model = load_eval_model(cfg, checkpoint)
    # Resolved once, here: options the config leaves null come from the checkpoint (how that
    # model tracks best); every video is tracked with exactly what metrics.json records.
    options = resolve_options(model, **tracking_options(cfg))
    module = TapVidEvaluation(
        model,
        options,
        query_mode=cfg.metrics.query_mode,
        first_mode_rule=cfg.metrics.first_mode_rule,
        pair_batch_size=cfg.tracking.pair_batch_size,
    )
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["use_distributed_sampler"] = False  # the datamodule shards without padding
    trainer_cfg.setdefault("logger", False)
    trainer: pl.Trainer = hydra.utils.instantiate(trainer_cfg, _convert_="partial")
    # Rank 0 only (the probe times matmuls), on what the Trainer resolved ("auto", "bf16" aliases).
    if trainer.is_global_zero and (
        slow_bf16 := slow_bf16_warning(trainer.strategy.root_device.type, trainer.precision)
    ):
        log.warning(slow_bf16)

    start = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero or module.result is None:
        return {}
    report = {
        "gmrw_version": __version__,
        "settings": settings(cfg, checkpoint, trainer.world_size, options.as_dict()),
        "means": module.result["means"],
        "per_video": module.result["per_video"],
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    path = output_dir / "metrics.json"
    write_json_atomic(path, report)
    log.info("metrics: %s", path)
    return report
