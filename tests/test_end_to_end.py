"""A user's whole path on the default experiment's settings, small: ``gmrw-train`` (stdout piped,
so progress lines instead of a bar) → ``gmrw-eval`` on its checkpoint, with and without
``tracking.*`` overrides → ``gmrw-track`` on its checkpoint.

The default run's checkpoints record ``processing_size`` next to ``upsample_factor`` (how that model
tracks best); ``gmrw-eval`` once failed on exactly that ("give either upsample_factor or
processing_size, not both")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gmrw.datatools.tiny import textured_video, write_tapvid_pickle
from gmrw.video import write_video
from helpers import compose_config, run_console

# The default experiment (synthetic) with a small network and world: seconds a step on 2 cores.
TINY_TRAINING = [
    "model.net.feature_channels=32",
    "model.net.num_transformer_layers=2",
    "model.net.ffn_dim_expansion=2",
    "data.train_set.img_size1=[64,64]",
    "data.train_set.img_size2=[48,48]",
    "data.train_set.frame_size=[64,64]",
    "data.train_set.texture_bank=8",
    "model.tracking.processing_size=64",
    "trainer.max_steps=4",
    "+trainer.limit_val_batches=0",
    "callbacks.model_checkpoint.every_n_train_steps=4",
    "callbacks.progress_log.every_n_steps=2",
    "logger=none",
]


@pytest.mark.slow  # three console scripts' start-up, 4 training steps, 3 evaluations of 2 tiny videos
def test_train_then_evaluate_then_track(tmp_path):
    from gmrw.checkpoint import load_model
    from gmrw.cli.track import main as track_main
    from gmrw.data.tapvid import TapVidDataset
    from gmrw.evaluation.run import evaluate
    from gmrw.metrics import compute_tapvid_metrics
    from gmrw.tracking import track

    env = {"GMRW_RUNS": str(tmp_path / "runs")}
    trained = run_console("gmrw-train", TINY_TRAINING, cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr[-4000:]
    # stdout is a pipe here: a progress line every 2 steps, none of the bar.
    progress = re.findall(
        r"step (\d)/4 \(\d+%\) · loss \d+\.\d{4} · [\d.e+-]+ s/step · ETA \d+:\d\d:\d\d", trained.stdout
    )
    assert progress == ["2", "4"], trained.stdout[-3000:]
    (run_dir,) = (tmp_path / "runs" / "synthetic").iterdir()
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    model = load_model(checkpoint)
    assert model.tracking_defaults == {
        "mode": "direct",
        "method": "weighted_argmax",
        "window": 2,
        "upsample_factor": 1,
        "processing_size": 64,
        "round_trip": 12,
        "chained_candidate": True,
        "fine_size": 256,
        "round_trip_correction": True,
    }

    benchmark = write_tapvid_pickle(tmp_path / "tapvid_davis.pkl", num_videos=2, num_frames=6, size=(40, 48))
    data = [f"data.path={benchmark}", "data.resolution=[40,48]"]
    evaluated = run_console("gmrw-eval", [*data, f"model.checkpoint={run_dir}"], cwd=tmp_path, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    (metrics,) = (tmp_path / "runs" / "eval").glob("*/metrics.json")
    report = json.loads(metrics.read_text())
    # Resolved options name the one size in effect (processing_size here; upsample_factor None).
    assert report["settings"]["tracking"] == {**model.tracking_defaults, "upsample_factor": None}
    assert Path(report["settings"]["checkpoint"]) == checkpoint.resolve()
    # The scores are those of gmrw.track with the checkpoint's own options.
    dataset = TapVidDataset("tapvid_davis", benchmark, query_mode="first", resolution=(40, 48))
    rows = {row["name"]: row for row in report["per_video"]}
    for item in dataset:
        tracks, occluded = track(model, item["video"][None], item["query_points"][None])
        scores = compute_tapvid_metrics(
            item["query_points"][None],
            item["occluded"][None],
            item["target_points"][None],
            occluded,
            tracks,
            "first",
        )
        assert rows[item["name"]]["average_jaccard"] == pytest.approx(
            float(scores["average_jaccard"][0]), abs=1e-6
        )

    # tracking.* overrides replace the checkpoint's options one by one (in-process: the same evaluate()).
    for overrides, expected in (
        (["tracking.upsample_factor=2"], {"upsample_factor": 2, "processing_size": None}),
        (
            ["tracking.mode=chained", "tracking.processing_size=32"],
            {"mode": "chained", "processing_size": 32, "upsample_factor": None},
        ),
    ):
        out = tmp_path / "eval_overrides" / "_".join(overrides)
        cfg = compose_config("eval", [*data, f"model.checkpoint={checkpoint}", *overrides], out)
        used = evaluate(cfg)["settings"]["tracking"]
        assert used == {**model.tracking_defaults, **expected}, overrides
        assert (out / "metrics.json").is_file()

    video = write_video(tmp_path / "clip.mp4", textured_video(6, 48, 64, seed=3), fps=6)
    out = tmp_path / "tracked"
    argv = [str(video), "--checkpoint", str(run_dir), "--grid", "2", "--no-video", "--out", str(out)]
    assert track_main(argv) == 0
    tracked = np.load(out / "clip.tracks.npz")
    assert tracked["tracks"].shape == (4, 6, 2) and tracked["occluded"].shape == (4, 6)
    assert np.isfinite(tracked["tracks"]).all()
