"""``gmrw-eval``: score a GMRW checkpoint on a TAP-Vid benchmark.

    gmrw-eval eval_preset=kubric_davis_x4 model.checkpoint=kubric_73k.pth data.path=tapvid_davis.pkl
    gmrw-eval data=tapvid_rgb_stacking data.path=… model.checkpoint=runs/kubric/<run> tracking.upsample_factor=2
    gmrw-eval … trainer=ddp trainer.devices=4        # videos sharded over 4 GPUs (Lightning DDP)

Every video is tracked with :func:`gmrw.track` inside ``Trainer.test``: the TAP-Vid datamodule
gives rank r of W the videos r, r + W, … (no padding), and :class:`gmrw.metrics.TapVidMetric`
gathers one row per video from every rank. Global rank 0 prints a table and writes
``<run>/metrics.json`` (benchmark means, one row per video, and the settings that produced them,
including the first-mode rule), atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from gmrw.paths import config_dir
from gmrw.training.checkpoints import CheckpointProblem, weights_file

log = logging.getLogger("gmrw.eval")

HEADLINE = (("average_jaccard", "AJ"), ("average_pts_within_thresh", "<δavg"), ("occlusion_accuracy", "OA"))


class ConfigError(ValueError):
    """A configuration value that cannot work, with a message saying why."""


# ----------------------------------------------------------------------------------- the module


class TapVidEvaluation(pl.LightningModule):
    """Tracks each TAP-Vid video of a test loop and accumulates its scores.

    Batches follow docs/CONTRACTS.md (batch size 1): ``video`` (1, T, H, W, 3) uint8,
    ``query_points`` (1, N, 3) (t, y, x) pixels, ``target_points`` (1, N, T, 2) (x, y) pixels,
    ``occluded`` (1, N, T) bool, ``name`` [str].

    Args:
        model: a GMRW (anything :func:`gmrw.track` accepts).
        tracking: :func:`gmrw.track` keyword arguments (mode, upsample_factor, method, window,
            pair_batch_size).
        query_mode / first_mode_rule: :class:`gmrw.metrics.TapVidMetric` options.
    """

    def __init__(
        self, model: torch.nn.Module, tracking: dict, query_mode: str, first_mode_rule: str = "tapnet"
    ):
        super().__init__()
        from gmrw.metrics import TapVidMetric

        self.model = model
        self.tracking = dict(tracking)
        self.metric = TapVidMetric(query_mode=query_mode, first_mode_rule=first_mode_rule)
        self.videos: list[dict[str, Any]] = []  # this rank's (name, size, seconds) per video
        self.result: dict[str, Any] | None = None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        from gmrw.tracking import track

        start = time.perf_counter()
        tracks, occluded = track(self.model, batch["video"], batch["query_points"], **self.tracking)
        if batch["video"].is_cuda:
            torch.cuda.synchronize(batch["video"].device)
        seconds = time.perf_counter() - start
        self.metric.update(
            batch["query_points"],
            batch["occluded"],
            batch["target_points"],
            occluded,
            tracks,
        )
        _, t, h, w, _ = batch["video"].shape
        self.videos.append(
            {
                "name": str(batch["name"][0]),
                "frames": int(t),
                "height": int(h),
                "width": int(w),
                "queries": int(batch["query_points"].shape[1]),
                "seconds": round(seconds, 3),
            }
        )

    def on_test_epoch_end(self) -> None:
        from gmrw.metrics import METRIC_NAMES

        # One row per video from every rank (a collective call: every rank takes part). No video
        # ids are given to the metric, so two videos that happen to share a name both count; the
        # sampler pads nothing, so there are no duplicates to drop. Rows and the videos' details
        # are both gathered in rank order, each rank's in the order it tracked them.
        with self.metric.sync_context():
            rows = self.metric.per_video()
        videos = self.videos
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict]] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(gathered, videos)
            videos = [v for part in gathered for v in part]
        if len(videos) != len(rows["id"]):
            raise RuntimeError(f"gathered {len(rows['id'])} score rows for {len(videos)} videos")
        per_video = []
        for k, video in enumerate(videos):
            entry = dict(video)
            entry.update({name: _number(rows[name][k]) for name in METRIC_NAMES})
            per_video.append(entry)
        per_video.sort(key=lambda r: r["name"])
        means = {name: _number(rows[name].nanmean()) if len(per_video) else None for name in METRIC_NAMES}
        # tapnet reports the plain mean over videos; a video with nothing to score (NaN) is left
        # out of that mean and counted here.
        means["num_videos"] = len(per_video)
        means["num_videos_without_score"] = sum(r["average_jaccard"] is None for r in per_video)
        self.result = {"means": means, "per_video": per_video}
        self.videos = []
        self.metric.reset()


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------------- config


def resolve_checkpoint(checkpoint: str | None) -> str | None:
    """A checkpoint file, or a run directory's newest intact checkpoint; None stays None.

    Newer files of a run directory that are damaged or truncated are skipped, each named.
    """
    if checkpoint is None:
        return None
    try:
        choice = weights_file(str(checkpoint), key="model.checkpoint")
    except CheckpointProblem as error:
        raise ConfigError(str(error)) from None
    for line in choice.report():
        log.warning("%s", line)
    return str(choice.path.resolve())


def validate_config(cfg: DictConfig) -> None:
    """Fail early, with a message naming the problem, before anything slow starts."""
    from gmrw.metrics import FIRST_MODE_RULES, QUERY_MODES
    from gmrw.tracking import resolve_options

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
    try:
        resolve_options(None, **tracking_options(cfg))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"tracking: {error}") from None
    choices = {
        "metrics.query_mode": (cfg.metrics.query_mode, QUERY_MODES),
        "metrics.first_mode_rule": (cfg.metrics.first_mode_rule, FIRST_MODE_RULES),
    }
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise ConfigError(f"{key}={value} is not one of {list(valid)}")
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


def load_eval_model(cfg: DictConfig, checkpoint: str | None) -> torch.nn.Module:
    """The model to score: ``checkpoint`` (as :func:`resolve_checkpoint` gives it) with
    ``model.net`` overrides."""
    from gmrw.models import CheckpointError, load_model

    overrides = {
        k: v for k, v in OmegaConf.to_container(cfg.model.net, resolve=True).items() if v is not None
    }
    if checkpoint is None:
        log.warning("model.checkpoint=null: random weights; the scores say nothing about GMRW")
    try:
        return load_model(checkpoint, **overrides)
    except CheckpointError as error:
        raise ConfigError(f"model.checkpoint={cfg.model.checkpoint}: {error}") from None


# ----------------------------------------------------------------------------------- output


def settings(
    cfg: DictConfig, checkpoint: str | None, world_size: int, tracking: dict[str, Any]
) -> dict[str, Any]:
    """What produced the scores, as written into metrics.json (``tracking``: the options used,
    the checkpoint's defaults filled in)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    first_mode = cfg.metrics.query_mode == "first"
    return {
        "checkpoint": checkpoint,
        "dataset": {k: data.get(k) for k in ("format", "path", "query_mode", "resolution", "max_videos")},
        "tracking": tracking,
        "metrics": {
            "query_mode": cfg.metrics.query_mode,
            # The rule only changes anything in first mode; recorded either way, marked as such.
            "first_mode_rule": cfg.metrics.first_mode_rule,
            "first_mode_rule_applies": first_mode,
            "scale": "fractions in [0, 1] (the paper's tables show ×100)",
        },
        "model_net_overrides": {
            k: v for k, v in OmegaConf.to_container(cfg.model.net, resolve=True).items() if v is not None
        },
        "world_size": world_size,
        "precision": str(cfg.trainer.get("precision")),
        "accelerator": str(cfg.trainer.get("accelerator")),
    }


def _scale_label(tracking: dict[str, Any]) -> str:
    size = tracking.get("processing_size")
    return f"short side {size} px" if size else f"×{tracking['upsample_factor']}"


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def print_report(report: dict, max_rows: int) -> None:
    """A rich table of the means (×100, as the paper reports them) and, if few, of each video."""
    from rich.console import Console
    from rich.table import Table

    from gmrw.metrics import THRESHOLDS

    means, setup = report["means"], report["settings"]
    tracking, metrics = setup["tracking"], setup["metrics"]
    rule = f", first-mode rule {metrics['first_mode_rule']}" if metrics["first_mode_rule_applies"] else ""
    title = (
        f"{setup['dataset']['format']} ({means['num_videos']} videos, {metrics['query_mode']} queries{rule}) — "
        f"{tracking['mode']}, {_scale_label(tracking)}, {tracking['method']}"
        + (f"@{tracking['window']}" if tracking.get("window") is not None else "")
    )

    def pct(value) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    # Thresholds across, so the table stays narrow in any terminal.
    table = Table(title=title, caption=f"OA (occlusion accuracy) {pct(means['occlusion_accuracy'])}")
    table.add_column("×100")
    for x in THRESHOLDS:
        table.add_column(f"{x} px", justify="right")
    table.add_column("average", justify="right", style="bold")
    table.add_row("Jaccard", *(pct(means[f"jaccard_{x}"]) for x in THRESHOLDS), pct(means["average_jaccard"]))
    table.add_row(
        "within δ",
        *(pct(means[f"pts_within_{x}"]) for x in THRESHOLDS),
        pct(means["average_pts_within_thresh"]),
    )
    console = Console()
    console.print(table)
    rows = report["per_video"]
    if 0 < len(rows) <= max_rows:
        videos = Table(title="per video")
        videos.add_column("video")
        for _, label in HEADLINE:
            videos.add_column(label, justify="right")
        videos.add_column("frames", justify="right")
        videos.add_column("queries", justify="right")
        videos.add_column("s", justify="right")
        for row in rows:
            videos.add_row(
                row["name"],
                *(pct(row[key]) for key, _ in HEADLINE),
                str(row.get("frames", "")),
                str(row.get("queries", "")),
                str(row.get("seconds", "")),
            )
        console.print(videos)
    console.print(f"checkpoint: {setup['checkpoint']}")


# ----------------------------------------------------------------------------------- entry


def evaluate(cfg: DictConfig) -> dict:
    """Run one evaluation from a composed config; returns the report written to metrics.json
    (on global rank 0; other ranks return ``{}``)."""
    from gmrw.models import flush_denormals
    from gmrw.tracking import resolve_options

    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    # Global-matching softmaxes produce float32 denormals that x86 CPUs process in slow microcode
    # (gmrw.models.cpu); GPU kernels are unaffected.
    flush_denormals(True)

    checkpoint = resolve_checkpoint(cfg.model.checkpoint)
    model = load_eval_model(cfg, checkpoint)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")  # reads the dataset's index now: a wrong path fails before the trainer starts
    # Options the config leaves null come from the checkpoint (how that model tracks best).
    tracking = resolve_options(model, **tracking_options(cfg)).as_dict()
    module = TapVidEvaluation(
        model,
        tracking={**tracking, "pair_batch_size": cfg.tracking.pair_batch_size},
        query_mode=cfg.metrics.query_mode,
        first_mode_rule=cfg.metrics.first_mode_rule,
    )
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["use_distributed_sampler"] = False  # the datamodule shards without padding
    trainer_cfg.setdefault("logger", False)
    trainer: pl.Trainer = hydra.utils.instantiate(trainer_cfg, _convert_="partial")

    start = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero or module.result is None:
        return {}
    report = {
        "gmrw_version": _version(),
        "settings": settings(cfg, checkpoint, trainer.world_size, tracking),
        "means": module.result["means"],
        "per_video": module.result["per_video"],
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    path = output_dir / "metrics.json"
    write_json_atomic(path, report)
    print_report(report, int(cfg.get("print_per_video_max", 40)))
    log.info("metrics: %s", path)
    return report


def _version() -> str:
    from gmrw import __version__

    return __version__


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        evaluate(cfg)
    except (ConfigError, FileNotFoundError) as error:
        log.error("%s", error)
        raise SystemExit(f"gmrw-eval: {error}") from None


if __name__ == "__main__":
    main()
