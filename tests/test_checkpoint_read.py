"""load_model: paper .pth (DDP dict with an argparse.Namespace), gmrw .ckpt, state dicts, errors."""

from __future__ import annotations

import datetime
import pickle

import pytest
import torch

import gmrw
from gmrw.checkpoint import CheckpointError, load_model
from gmrw.models import GMRW


def same_weights(model: torch.nn.Module, state: dict) -> bool:
    ours = model.state_dict()
    return set(ours) == set(state) and all(torch.equal(ours[k], v) for k, v in state.items())


def test_none_gives_a_fresh_model_in_eval_mode():
    model = load_model(None, feature_channels=64)
    assert isinstance(model, GMRW) and not model.training
    assert model.feature_channels == 64


def test_reference_state_dict_loads_strictly(fixtures_dir):
    state = torch.load(fixtures_dir / "model.pt")["state_dict"]
    model = GMRW()
    model.load_state_dict(state, strict=True)
    assert same_weights(model, state)


def test_paper_ddp_checkpoint(fixtures_dir):
    # the file holds an argparse.Namespace: plain weights-only loading refuses it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(fixtures_dir / "original_checkpoint.pth")
    model = gmrw.load_model(fixtures_dir / "original_checkpoint.pth")
    assert not model.training
    assert same_weights(model, torch.load(fixtures_dir / "model.pt")["state_dict"])
    # model settings come from the paper's training arguments
    assert model.temperature is None and model.flow_method == "weighted_sum" and model.window == 5
    # and tracking defaults from the paper's documented TAP-Vid setting (chained, 256 px ×4)
    assert model.tracking_defaults == {"mode": "chained", "method": "weighted_sum", "processing_size": 1024}


def test_lightning_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    source = GMRW(temperature=0.5)
    tracking = {"mode": "direct", "method": "weighted_sum", "window": None, "processing_size": 128}
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
        "hyper_parameters": {"net": {"temperature": 0.5, "smoothness_loss": False}, "tracking": tracking},
        "epoch": 0,
    }
    path = tmp_path / "epoch=0-step=1.ckpt"
    torch.save(ckpt, path)
    model = load_model(path)
    assert model.temperature == 0.5 and model.smoothness_loss is False
    assert model.tracking_defaults == {"mode": "direct", "method": "weighted_sum", "processing_size": 128}
    assert same_weights(model, source.state_dict())
    assert load_model(path, smoothness_loss=True).smoothness_loss is True  # kwargs override


def test_a_run_directory_loads_its_newest_checkpoint(tmp_path):
    """load_model takes a run directory as every command line does: its newest intact file."""
    import os

    (tmp_path / "checkpoints").mkdir()
    for step, temperature in ((1, 0.5), (2, 0.25)):
        torch.manual_seed(step)
        source = GMRW(temperature=temperature, feature_channels=32, num_transformer_layers=1)
        net = {"temperature": temperature, "feature_channels": 32, "num_transformer_layers": 1}
        path = tmp_path / "checkpoints" / f"step={step:07d}.ckpt"
        torch.save(
            {
                "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
                "hyper_parameters": {"net": net},
            },
            path,
        )
        os.utime(path, ns=(step * 10**9, step * 10**9))
    model = load_model(tmp_path)
    assert model.temperature == 0.25 and same_weights(model, source.state_dict())


def test_checkpoints_of_earlier_versions_still_load(tmp_path):
    """Earlier checkpoints' ``net`` carries GMFlow's ``upsample_factor`` (never used by GMRW) and
    older ones kept the tracking options among the validation settings."""
    from gmrw.training.module import GMRWLitModule

    small = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}
    torch.manual_seed(2)
    source = GMRW(**small)
    hparams = {
        "net": {**small, "upsample_factor": 8},
        "optimizer": {"lr": 1e-4, "weight_decay": 1e-4},
        "smoothness_curriculum": {},
        "validation": {"query_mode": "strided", "mode": "direct", "upsample_factor": 2},
        "init_from": None,
    }
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
            "hyper_parameters": hparams,
        },
        path,
    )
    model = load_model(path)
    assert same_weights(model, source.state_dict())
    assert model.tracking_defaults == {"mode": "direct", "upsample_factor": 2}
    module = GMRWLitModule(**hparams)  # what Lightning's load_from_checkpoint does with them
    assert "upsample_factor" not in module.hparams["net"] and module.model.feature_channels == 32


def test_garbage_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable GMRW checkpoint"):
        load_model(path)


def test_foreign_weights_give_a_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="does not match the GMRW architecture"):
        load_model(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no GMRW weights"):
        load_model(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    # a global outside the allow-list: refused rather than unpickled
    torch.save({"model": GMRW().state_dict(), "args": datetime.timedelta(days=1)}, path)
    with pytest.raises(CheckpointError):
        load_model(path)
