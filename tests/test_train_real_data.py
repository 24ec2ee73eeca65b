"""The paper's experiments train from the console script on tiny copies of the real datasets.

``experiment=kubric`` reads a MOVi-E TFDS folder and validates on TAP-Vid-Kubric sampled from its
validation split; ``experiment=kinetics`` reads a Kinetics folder with a truncated and a zero-byte
mp4 planted in it, validates on a TAP-Vid-DAVIS pickle, and reports the skipped files at the end,
also when loader workers met them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from gmrw.datatools import tiny
from helpers import run_console

# CPU, a small network and small crops: a few seconds per step on 2 cores.
SMALL = [
    "trainer=cpu",
    "logger=csv",
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "model.net.feature_channels=32",
    "model.net.num_transformer_layers=2",
    "model.net.ffn_dim_expansion=2",
    "data.train_set.img_size1=64",
    "data.train_set.img_size2=48",
]


def _train(tmp_path: Path, args: list[str]) -> tuple[dict, str, Path]:
    result = run_console("gmrw-train", args, cwd=tmp_path, env={"GMRW_RUNS": str(tmp_path / "runs")})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    (run_dir,) = [p for p in (tmp_path / "runs").glob("*/*") if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2
    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    losses = [float(r["train/loss"]) for r in csv.DictReader(metrics.open()) if r.get("train/loss")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    return summary, output, run_dir


@pytest.mark.slow
def test_kubric_experiment_trains_and_validates_on_tapvid_kubric(tmp_path):
    root = tmp_path / "tfds"
    tiny.write_tiny_movi_e(root, num_train=3, num_validation=2, num_frames=8, size=(32, 32))
    val = f"{{format: tapvid_kubric, path: '{root}', num_points: 16, resolution: [32, 32], max_videos: 1}}"
    summary, _, run_dir = _train(
        tmp_path,
        [
            "experiment=kubric",
            f"data.root={root}",
            "data.num_workers=0",
            f"data.val={val}",
            "model.validation.query_mode=strided",
            "validate_before_training=false",  # validated once, at the end
            *SMALL,
        ],
    )
    assert summary["first"]["train/loss"] > 0
    for key in ("val/aj", "val/delta_avg", "val/oa"):
        assert 0.0 <= summary["last"][key] <= 1.0, (key, summary["last"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.fixture(scope="module")
def kinetics_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinetics")
    # Two readable videos and two broken ones: a batch of 2 for 2 steps meets all four.
    files = tiny.write_tiny_kinetics(
        root, splits=("train",), videos_per_class=1, num_frames=30, size=(48, 64)
    )
    davis = tiny.write_tapvid_pickle(root.parent / "tapvid_davis.pkl", "davis", num_videos=2, size=(32, 32))
    return root, files, davis


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kinetics_experiment_trains_and_reports_skipped_videos(tmp_path, kinetics_root, workers):
    root, files, davis = kinetics_root
    args = [
        "experiment=kinetics",
        f"data.root={root}",
        f"data.num_workers={workers}",
        "data.batch_size=2",
        *SMALL,
    ]
    if workers == 0:  # also validate on a TAP-Vid pickle, once, at the end
        args += [
            f"data.val={{format: tapvid_davis, path: '{davis}', resolution: [32, 32], max_videos: 1}}",
            "validate_before_training=false",
        ]
    summary, output, _ = _train(tmp_path, args)
    # The end-of-run report comes from the main process and names both planted files, even when
    # the loader workers were the ones that met them.
    report = [line for line in output.splitlines() if "unreadable video(s) skipped in this run" in line]
    assert len(report) == 1, output[-4000:]
    assert "2 unreadable video(s)" in report[0]
    for bad in files["bad"]:
        assert str(bad) in report[0]
    if workers == 0:
        assert 0.0 <= summary["last"]["val/aj"] <= 1.0
