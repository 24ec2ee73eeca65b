"""TAP-Vid validation during the paper's experiments: on TAP-Vid-DAVIS where `gmrw-data download
tapvid_davis D` puts it (``paths.data_root=D``), and one line at start-up when it is not there."""

from __future__ import annotations

import json
import logging

import hydra
import pytest

from gmrw.datatools import tiny
from helpers import compose_train, run_console

EXPERIMENTS = ["kubric", "kinetics", "kinetics_finetune"]


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    """D/tapvid_davis/tapvid_davis.pkl, the layout `gmrw-data download tapvid_davis D` leaves."""
    root = tmp_path_factory.mktemp("tapvid")
    tiny.write_tapvid_pickle(
        root / "tapvid_davis" / "tapvid_davis.pkl", "davis", num_videos=2, num_frames=6, size=(32, 32)
    )
    return root


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_validate_on_davis_where_the_download_puts_it(experiment, davis_root, caplog):
    cfg = compose_train([f"experiment={experiment}", "data.root=/data/x", f"paths.data_root={davis_root}"])
    val = cfg.data.val
    assert val.format == "tapvid_davis" and val.path == str(davis_root / "tapvid_davis" / "tapvid_davis.pkl")
    # The paper's evaluation size and scoring: 256x256 frames, strided queries scored strided.
    assert list(val.resolution) == [256, 256] and val.max_videos == 5
    assert val.query_mode == cfg.model.validation.query_mode == "strided"
    assert cfg.trainer.val_check_interval == 2000
    with caplog.at_level(logging.WARNING):
        datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.val_set_names == ["val"]
    assert "validation is off" not in caplog.text


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_without_davis_validation_is_off_and_says_how_to_turn_it_on(experiment, tmp_path, caplog):
    cfg = compose_train([f"experiment={experiment}", "data.root=/data/x", f"paths.data_root={tmp_path}"])
    with caplog.at_level(logging.WARNING):
        datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.val_set_names == []
    (line,) = [r.getMessage() for r in caplog.records if "validation is off" in r.getMessage()]
    assert str(tmp_path / "tapvid_davis" / "tapvid_davis.pkl") in line
    assert "`gmrw-data download tapvid_davis DIR`, then add paths.data_root=DIR" in line
    assert "\n" not in line


def test_validation_set_to_null_is_said_too(caplog):
    cfg = compose_train(["experiment=kinetics", "data.root=/data/x", "data.val=null"])
    with caplog.at_level(logging.WARNING):
        assert hydra.utils.instantiate(cfg.data).val_set_names == []
    assert "TAP-Vid validation is off: data.val is null. To turn it on: data.val=" in caplog.text


def test_an_explicit_validation_set_still_fails_loudly_when_optional_is_off(tmp_path):
    cfg = compose_train(
        ["experiment=kinetics", "data.root=/data/x", f"paths.data_root={tmp_path}", "data.val_optional=false"]
    )
    datamodule = hydra.utils.instantiate(cfg.data)
    with pytest.raises(FileNotFoundError, match="tapvid_davis"):
        datamodule.setup("validate")


@pytest.mark.slow
def test_kinetics_run_logs_davis_metrics_from_the_download_location(tmp_path, davis_root):
    """`gmrw-train experiment=kinetics paths.data_root=D` validates on D's TAP-Vid-DAVIS: val/aj."""
    kinetics = tmp_path / "kinetics"
    tiny.write_tiny_kinetics(kinetics, splits=("train",), videos_per_class=1, num_frames=30, size=(48, 64),
                             bad_files=False)  # fmt: skip
    args = [
        "experiment=kinetics",
        f"data.root={kinetics}",
        f"paths.data_root={davis_root}",
        "data.num_workers=0",
        "data.val.resolution=[32,32]",  # small for the CPU: the default is the benchmark's 256x256
        "data.val.max_videos=1",
        "model.tracking.processing_size=null",
        "validate_before_training=false",
        "trainer=cpu",
        "logger=csv",
        "trainer.max_steps=2",
        "model.net.feature_channels=32",
        "model.net.num_transformer_layers=2",
        "model.net.ffn_dim_expansion=2",
        "data.train_set.img_size1=64",
        "data.train_set.img_size2=48",
    ]
    result = run_console("gmrw-train", args, cwd=tmp_path, env={"GMRW_RUNS": str(tmp_path / "runs")})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "validation is off" not in output
    (summary,) = (tmp_path / "runs").glob("*/*/summary.json")
    last = json.loads(summary.read_text())["last"]
    for key in ("val/aj", "val/delta_avg", "val/oa"):
        assert 0.0 <= last[key] <= 1.0, (key, last)
