"""Every experiment and config-group option composes, and bad values fail clearly."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from gmrw.paths import config_dir
from helpers import compose_train

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
GROUP_OPTIONS = [
    (group, p.stem)
    for group in ("trainer", "logger", "callbacks", "data", "debug")
    for p in sorted((config_dir() / group).glob("*.yaml"))
]


def test_every_expected_experiment_exists():
    assert {"synthetic", "kubric", "kinetics", "kinetics_finetune"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    assert cfg.model._target_ == "gmrw.training.module.GMRWLitModule"
    assert cfg.trainer.gradient_clip_val == 20.0
    assert cfg.model.optimizer.weight_decay == 1e-4
    # Everything but required dataset paths / init checkpoints resolves.
    container = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert container["feature_channels"] == 128


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes(group, option, tmp_path):
    cfg = compose_train([f"{group}={option}"], tmp_path)
    OmegaConf.to_container(cfg.trainer, resolve=True)


def test_paper_runs_are_reproduced():
    kubric = compose_train(["experiment=kubric"])
    assert kubric.model.optimizer.lr == 4e-5
    assert kubric.model.net.smoothness_loss and kubric.model.smoothness_curriculum.enabled
    assert (kubric.data.img_size1, kubric.data.img_size2) == (640, 512)
    assert kubric.data.aug_setting == "setting2" and kubric.data.batch_size == 1

    kinetics = compose_train(["experiment=kinetics"])
    assert not kinetics.model.net.smoothness_loss
    assert kinetics.data.frame_gap == 20 and kinetics.model.optimizer.lr == 4e-5

    finetune = compose_train(["experiment=kinetics_finetune"])
    assert finetune.model.optimizer.lr == 4e-6
    assert finetune.model.net.flow_method == "weighted_argmax" and finetune.model.net.window == 20
    assert finetune.model.net.smoothness_loss
    assert finetune.require_init_from and finetune.model.init_from is None


def test_command_line_group_override_beats_experiment():
    cfg = compose_train(["experiment=kinetics", "trainer=ddp", "trainer.devices=4"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4


def test_learning_rate_scales_with_world_size_by_default():
    cfg = compose_train([])
    assert cfg.model.optimizer.scale_lr_with_world_size is True
