"""``gmrw-eval``: end to end on a tiny TAP-Vid pickle, the paper's presets, errors, and DDP sharding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gmrw.choices import ConfigError
from gmrw.datatools.tiny import write_tapvid_pickle
from gmrw.evaluation.run import evaluate
from helpers import compose_config, run_console

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}
PRESETS = {
    "kubric_davis_x2": ("tapvid_davis", 2, "kubric_73k.pth"),
    "kubric_davis_x4": ("tapvid_davis", 4, "kubric_73k.pth"),
    "kinetics_davis_x4": ("tapvid_davis", 4, "kinetics_144k.pth"),
    "kubric_kubric_x2": ("tapvid_kubric_tsv", 2, "kubric_73k.pth"),
    "kubric_kubric_x4": ("tapvid_kubric_tsv", 4, "kubric_73k.pth"),
    "kinetics_kubric_x4": ("tapvid_kubric_tsv", 4, "kinetics_144k.pth"),
}


def compose_eval(overrides: list[str], output_dir: Path | None = None):
    """The composed ``eval`` config, with the run directory set as Hydra would."""
    return compose_config("eval", overrides, output_dir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from gmrw.models import GMRW

    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    checkpoint = root / "small.pt"
    torch.save({"state_dict": GMRW(**SMALL_NET).state_dict(), "config": dict(SMALL_NET)}, checkpoint)
    return {
        "root": root,
        "davis": write_tapvid_pickle(root / "tapvid_davis.pkl", num_videos=3, num_frames=8, size=(40, 48)),
        "checkpoint": checkpoint,
    }


def _args(tiny, *extra) -> list[str]:
    return [
        f"data.path={tiny['davis']}",
        "data.resolution=[32,32]",
        f"model.checkpoint={tiny['checkpoint']}",
        *extra,
    ]


def _expected_rows(tiny, query_mode: str, first_mode_rule: str = "tapnet") -> dict[str, dict]:
    """Each video tracked and scored here, directly with gmrw.track and compute_tapvid_metrics."""
    from gmrw.checkpoint import load_model
    from gmrw.data.tapvid import TapVidDataset
    from gmrw.metrics import compute_tapvid_metrics
    from gmrw.tracking import track

    model = load_model(tiny["checkpoint"])
    dataset = TapVidDataset("tapvid_davis", tiny["davis"], query_mode=query_mode, resolution=(32, 32))
    rows = {}
    for item in dataset:
        tracks, occluded = track(model, item["video"][None], item["query_points"][None])
        scores = compute_tapvid_metrics(
            item["query_points"][None],
            item["occluded"][None],
            item["target_points"][None],
            occluded,
            tracks,
            query_mode,
            first_mode_rule,
        )
        rows[item["name"]] = {k: float(v[0]) for k, v in scores.items()}
    return rows


def _check_report(report: dict, expected: dict[str, dict]) -> None:
    rows = {row["name"]: row for row in report["per_video"]}
    assert sorted(rows) == sorted(expected) == ["video0", "video1", "video2"]
    for name, scores in expected.items():
        for key, value in scores.items():
            assert rows[name][key] == pytest.approx(value, abs=1e-6), (name, key)
    for key in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"):
        assert report["means"][key] == pytest.approx(np.mean([s[key] for s in expected.values()]), abs=1e-6)
    assert report["means"]["num_videos"] == 3


@pytest.mark.slow  # ~12 s: the console script's start-up plus tracking three videos
def test_console_writes_metrics_json(tiny, tmp_path):
    result = run_console(
        "gmrw-eval",
        _args(tiny, "data.query_mode=strided"),
        cwd=tmp_path,
        env={"GMRW_RUNS": str(tmp_path / "runs")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    files = list((tmp_path / "runs").glob("eval/*/metrics.json"))
    assert len(files) == 1, files
    assert not list(files[0].parent.glob(".*partial*")), "a temporary file was left behind"
    report = json.loads(files[0].read_text())
    _check_report(report, _expected_rows(tiny, "strided"))
    settings = report["settings"]
    assert settings["metrics"] == {
        "query_mode": "strided",
        "first_mode_rule": "tapnet",
        "first_mode_rule_applies": False,
        "scale": "fractions in [0, 1] (the paper's tables show ×100)",
    }
    assert settings["tracking"]["mode"] == "chained" and settings["tracking"]["upsample_factor"] == 1
    assert settings["dataset"]["format"] == "tapvid_davis" and settings["world_size"] == 1
    assert Path(settings["checkpoint"]) == tiny["checkpoint"].resolve()
    # The table on the console: the AJ of the benchmark, ×100.
    assert "Jaccard" in result.stdout and f"{100 * report['means']['average_jaccard']:.1f}" in result.stdout


def test_first_mode_rule_is_applied_and_recorded(tiny, tmp_path):
    cfg = compose_eval(_args(tiny, "metrics.first_mode_rule=reference_2022", "data.max_videos=1"), tmp_path)
    report = evaluate(cfg)
    assert report["settings"]["metrics"]["first_mode_rule"] == "reference_2022"
    assert report["settings"]["metrics"]["first_mode_rule_applies"] is True
    assert json.loads((tmp_path / "metrics.json").read_text()) == report
    from gmrw.checkpoint import load_model
    from gmrw.data.tapvid import TapVidDataset
    from gmrw.metrics import compute_tapvid_metrics
    from gmrw.tracking import track

    model = load_model(tiny["checkpoint"])
    item = TapVidDataset("tapvid_davis", tiny["davis"], query_mode="first", resolution=(32, 32))[0]
    tracks, occluded = track(model, item["video"][None], item["query_points"][None])
    args = (item["query_points"][None], item["occluded"][None], item["target_points"][None], occluded, tracks)
    old = compute_tapvid_metrics(*args, "first", "reference_2022")["average_jaccard"][0]
    new = compute_tapvid_metrics(*args, "first", "tapnet")["average_jaccard"][0]
    row = next(r for r in report["per_video"] if r["name"] == item["name"])
    assert row["average_jaccard"] == pytest.approx(old, abs=1e-9)
    assert old != pytest.approx(new), "the tiny video should tell the two rules apart"


def test_random_weights_smoke_run(tiny, tmp_path):
    overrides = [
        f"data.path={tiny['davis']}",
        "data.resolution=[32,32]",
        "model.checkpoint=null",
        "data.max_videos=1",
        *(f"model.net.{k}={v}" for k, v in SMALL_NET.items()),
    ]
    report = evaluate(compose_eval(overrides, tmp_path))
    assert report["settings"]["checkpoint"] is None and report["means"]["num_videos"] == 1
    assert report["settings"]["model_net_overrides"] == SMALL_NET


def test_errors_are_named_and_nothing_is_written(tiny, tmp_path):
    with pytest.raises(ConfigError, match="model.checkpoint is required"):
        evaluate(compose_eval([f"data.path={tiny['davis']}"], tmp_path))
    with pytest.raises(ConfigError, match="data.path is required"):
        evaluate(compose_eval(["model.checkpoint=null"], tmp_path))
    not_gmrw = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}}, not_gmrw)
    with pytest.raises(ConfigError, match="resnet.pth"):
        evaluate(compose_eval([f"data.path={tiny['davis']}", f"model.checkpoint={not_gmrw}"], tmp_path))
    with pytest.raises(ConfigError, match="no such file"):
        evaluate(
            compose_eval([f"data.path={tiny['davis']}", f"model.checkpoint={tmp_path / 'x.pth'}"], tmp_path)
        )
    with pytest.raises(ConfigError, match="tracking: .*weighted_argmax.* needs a window"):
        evaluate(compose_eval(_args(tiny, "tracking.method=weighted_argmax"), tmp_path))
    with pytest.raises(ConfigError, match="nope.pkl: no such file or folder"):
        evaluate(compose_eval([f"data.path={tmp_path / 'nope.pkl'}", "model.checkpoint=null"], tmp_path))
    not_a_pickle = tmp_path / "notes.pkl"
    not_a_pickle.write_text("not a pickle\n")
    with pytest.raises(
        ConfigError,
        match=r"notes.pkl is not a pickle: it holds text starting .not a pickle.*\(UnpicklingError",
    ):
        evaluate(compose_eval([f"data.path={not_a_pickle}", "model.checkpoint=null"], tmp_path))
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_reproduce_the_paper_scripts(preset):
    data_format, factor, weights = PRESETS[preset]
    cfg = compose_eval([f"eval_preset={preset}"])
    assert cfg.data.format == data_format and cfg.data.query_mode == "strided"
    assert cfg.metrics.query_mode == "strided"  # the paper scored every benchmark in strided mode
    assert cfg.tracking.mode == "chained" and cfg.tracking.method == "weighted_sum"
    assert cfg.tracking.upsample_factor == factor and cfg.model.checkpoint.endswith(weights)
    assert list(cfg.data.resolution) == [256, 256] and cfg.trainer.precision == "32-true"
    assert cfg.model.net.pixel_divisor == 1.0  # the paper's script fed 0-255 frames with norm=False
    # Command-line overrides still win over a preset.
    cfg = compose_eval([f"eval_preset={preset}", "tracking.upsample_factor=1", "data.path=x.pkl"])
    assert cfg.tracking.upsample_factor == 1 and cfg.data.path == "x.pkl"


@pytest.mark.slow
def test_ddp_two_ranks_score_every_video_once(tiny, tmp_path):
    result = run_console(
        "gmrw-eval",
        _args(tiny, "trainer=ddp_sim", "data.query_mode=strided"),
        cwd=tmp_path,
        env={"GMRW_RUNS": str(tmp_path / "runs")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    files = list((tmp_path / "runs").glob("eval/*/metrics.json"))
    assert len(files) == 1, f"both ranks must share one run directory: {files}"
    report = json.loads(files[0].read_text())
    assert report["settings"]["world_size"] == 2
    _check_report(report, _expected_rows(tiny, "strided"))  # 3 videos over 2 ranks, none twice


def test_kubric_tsv_with_a_preset(tiny, tmp_path):
    """The Kubric presets read the paper's pre-sampled tsv; a preset's settings reach metrics.json."""
    from gmrw.datatools.tiny import write_kubric_tsv

    tsv = write_kubric_tsv(tiny["root"] / "validation_data.tsv", num_videos=2, num_frames=5, size=32)
    overrides = [
        "eval_preset=kubric_kubric_x2",
        f"data.path={tsv}",
        "data.resolution=[32,32]",
        f"model.checkpoint={tiny['checkpoint']}",
    ]
    report = evaluate(compose_eval(overrides, tmp_path))
    assert [row["name"] for row in report["per_video"]] == ["kubric_0", "kubric_1"]
    assert report["settings"]["dataset"]["format"] == "tapvid_kubric_tsv"
    assert report["settings"]["tracking"]["upsample_factor"] == 2
    assert report["settings"]["metrics"]["query_mode"] == "strided"
    assert all(row["average_jaccard"] is not None for row in report["per_video"])


def _lightning_checkpoint(path: Path, tracking: dict) -> Path:
    """A checkpoint as training writes it: weights under ``model.``, the network's and the
    tracking options in ``hyper_parameters``."""
    from gmrw.models import GMRW

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"net": dict(SMALL_NET), "tracking": tracking}}, path
    )
    return path


def test_checkpoint_with_a_processing_size_evaluates_as_it_tracks(tiny, tmp_path):
    """The default run's checkpoints record processing_size next to upsample_factor=1; the options
    are resolved once, so neither gmrw-eval nor a tracking.* override trips over the pair."""
    from gmrw.tracking import resolve_options, track

    recorded = {"mode": "direct", "upsample_factor": 1, "processing_size": 32, "method": "weighted_sum"}
    checkpoint = _lightning_checkpoint(tmp_path / "last.ckpt", recorded)
    base = [f"data.path={tiny['davis']}", "data.resolution=[32,32]", "data.max_videos=1"]
    report = evaluate(compose_eval([*base, f"model.checkpoint={checkpoint}"], tmp_path / "default"))
    # One size is in effect: processing_size wins, so upsample_factor reads None once resolved.
    expected = {
        **recorded,
        "upsample_factor": None,
        "window": None,
        "round_trip": None,
        "chained_candidate": False,
        "fine_size": None,
        "round_trip_correction": False,
    }
    assert report["settings"]["tracking"] == expected
    report = evaluate(
        compose_eval([*base, f"model.checkpoint={checkpoint}", "tracking.upsample_factor=2"], tmp_path / "x2")
    )
    assert report["settings"]["tracking"]["upsample_factor"] == 2
    assert report["settings"]["tracking"]["processing_size"] is None

    from gmrw.checkpoint import load_model

    model = load_model(checkpoint)
    video, queries = torch.zeros(1, 3, 32, 32, 3), torch.tensor([[[0.0, 16.0, 16.0]]])
    options = resolve_options(model, upsample_factor=2)
    by_options = track(model, video, queries, options=options)
    by_arguments = track(model, video, queries, upsample_factor=2)
    assert all(torch.equal(a, b) for a, b in zip(by_options, by_arguments))
    with pytest.raises(TypeError, match=r"resolved options or the option arguments \['mode'\], not both"):
        track(model, video, queries, mode="direct", options=options)
