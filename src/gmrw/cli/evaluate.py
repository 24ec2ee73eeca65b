"""``gmrw-eval``: score a GMRW checkpoint on a TAP-Vid benchmark (argument parsing and printing;
the work is :func:`gmrw.evaluation.run.evaluate`).

    gmrw-eval eval_preset=kubric_davis_x4 model.checkpoint=kubric_73k.pth data.path=tapvid_davis.pkl
    gmrw-eval data=tapvid_rgb_stacking data.path=… model.checkpoint=runs/kubric/<run> tracking.upsample_factor=2
    gmrw-eval … trainer=ddp trainer.devices=4        # videos sharded over 4 GPUs (Lightning DDP)

Global rank 0 prints a table of the means and writes ``<run>/metrics.json``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from omegaconf import DictConfig

from gmrw.choices import ConfigError
from gmrw.cli.errors import fail, find_cause, run_hydra
from gmrw.paths import config_dir

log = logging.getLogger("gmrw.eval")

HEADLINE = (("average_jaccard", "AJ"), ("average_pts_within_thresh", "<δavg"), ("occlusion_accuracy", "OA"))


def _scale_label(tracking: dict[str, Any]) -> str:
    size = tracking.get("processing_size")
    return f"short side {size} px" if size else f"×{tracking['upsample_factor']}"


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


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def compose_and_evaluate(cfg: DictConfig) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported once a config is composed: a command line Hydra refuses is answered without
    # waiting for torch and Lightning to load (as gmrw-train does).
    from gmrw.evaluation.run import evaluate

    try:
        report = evaluate(cfg)
    except Exception as error:
        # A setting a constructor refused comes wrapped in Hydra's InstantiationException.
        cause = find_cause(error, (ConfigError, FileNotFoundError))
        if cause is None:
            raise
        fail("gmrw-eval", str(cause), log)
    if report:
        print_report(report, int(cfg.get("print_per_video_max", 40)))


def main() -> None:
    """The console script: Hydra's command line, every bad input answered in one line."""
    run_hydra(compose_and_evaluate, "gmrw-eval")


if __name__ == "__main__":
    main()
