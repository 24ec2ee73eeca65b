"""Plot learning curves of gmrw-train runs from their summary.json histories.

    python benchmarks/plot_learning_curves.py RUN_DIR [RUN_DIR ...] --labels default long --out docs/curves.png
    python benchmarks/plot_learning_curves.py A B --labels "crops differ" "same window" \\
        --metrics train/cycle_loss val_photos/aj --out docs/ablation.png

Each metric gets a panel with one line per run against the training step; ``--baseline NAME=VALUE``
draws a horizontal reference line on the real-photo AJ panel (e.g. identity and Lucas–Kanade on the
same videos).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TITLES = {
    "val/aj": "AJ, procedural validation videos",
    "val_photos/aj": "AJ, real-photo benchmark (validation videos)",
    "val_photos/delta_avg": "<δavg, real-photo benchmark",
    "train/cycle_loss": "cycle loss (training)",
    "train/accuracy": "walk accuracy % (training)",
}


def load_history(run: Path) -> dict[str, list[list[float]]]:
    path = run / "summary.json" if run.is_dir() else run
    summary = json.loads(path.read_text())
    if "history" not in summary:
        raise SystemExit(f"{path} has no history (written by an older gmrw)")
    return summary["history"]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or summary.json files)")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    parser.add_argument("--metrics", nargs="+", default=["val/aj", "val_photos/aj"])
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--title", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = [load_history(run) for run in args.runs]
    fig, axes = plt.subplots(1, len(args.metrics), figsize=(5 * len(args.metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], args.metrics):
        for label, history in zip(labels, histories):
            points = history.get(metric)
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        if metric == "val_photos/aj":  # the baselines are scores on the real-photo benchmark
            for item in args.baseline:
                name, value = item.split("=", 1)
                ax.axhline(float(value), linestyle="--", linewidth=1, color="gray")
                ax.annotate(name, (0, float(value)), textcoords="offset points", xytext=(2, 3), fontsize=8)
        ax.set_title(TITLES.get(metric, metric), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
