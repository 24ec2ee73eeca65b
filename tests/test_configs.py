"""Every experiment and config-group option composes, and bad values fail clearly."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from gmrw.paths import config_dir
from gmrw.tracking import TrackingOptions
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
    # The tracking options the checkpoints will carry, and those validation uses, are valid.
    model = OmegaConf.to_container(cfg.model, resolve=True)
    recorded = {k: v for k, v in model["tracking"].items() if v is not None}
    TrackingOptions(**recorded)
    TrackingOptions(**{**recorded, **model.get("validation_tracking", {})})


def test_the_long_recipe_trains_and_tracks_as_it_was_measured(tmp_path):
    """synthetic_long inherits synthetic.yaml: a change made there for make train's checkpoint must
    not move the schedule or the tracking the long recipe's published figures were measured with
    (docs/precision.md, "The long recipe with the step", "Processing at 256 px" and "The round-trip
    correction"); make train's learning rate, batch and schedule have already moved away from it."""
    cfg = compose_train(["experiment=synthetic_long"], tmp_path)
    short = compose_train(["experiment=synthetic"], tmp_path)
    assert cfg.model.optimizer.lr == 4e-4 != short.model.optimizer.lr
    assert cfg.model.optimizer.decay == "cosine" and cfg.model.optimizer.warmup_steps == 20
    assert cfg.data.batch_size == 2 != short.data.batch_size
    assert cfg.trainer.max_steps == 2000 and cfg.trainer.val_check_interval == 500
    curriculum = cfg.model.smoothness_curriculum
    assert (curriculum.start_step, curriculum.end_step) == (770, 1310)
    assert OmegaConf.to_container(cfg.model.tracking, resolve=True) == {
        "mode": "direct",
        "method": "weighted_argmax",
        "window": 2,
        "upsample_factor": 1,
        "processing_size": 256,
        "round_trip": 8,
        "chained_candidate": True,
        "fine_size": 0,
        "round_trip_correction": True,
    }


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes(group, option, tmp_path):
    cfg = compose_train([f"{group}={option}"], tmp_path)
    if "root" in cfg.data.keys():  # the one value a real dataset needs from the command line
        cfg = compose_train([f"{group}={option}", "data.root=/data"], tmp_path)
    # Every value resolves, and the option is the one composed.
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["trainer"]["_target_"] == "pytorch_lightning.Trainer"
    if group == "data":
        assert cfg.data._target_.startswith("gmrw.data.modules.")
    if group == "trainer":
        expected = compose_train([], tmp_path).trainer if option in ("default", "cpu") else None
        assert expected is None or cfg.trainer == expected


def test_paper_runs_are_reproduced():
    kubric = compose_train(["experiment=kubric"])
    assert kubric.model.optimizer.lr == 4e-5
    assert kubric.model.net.smoothness_loss and kubric.model.smoothness_curriculum.enabled
    assert (kubric.data.train_set.img_size1, kubric.data.train_set.img_size2) == ([640, 640], [512, 512])
    assert kubric.data.train_set.aug_setting == "setting2" and kubric.data.batch_size == 1
    assert kubric.data.train_set.frame_gap == 1 and kubric.trainer.max_steps == 73000

    kinetics = compose_train(["experiment=kinetics"])
    assert not kinetics.model.net.smoothness_loss
    assert kinetics.data.train_set.frame_gap == 20 and kinetics.model.optimizer.lr == 4e-5
    assert kinetics.data.train_set._target_ == "gmrw.data.kinetics.KineticsPairs"

    finetune = compose_train(["experiment=kinetics_finetune"])
    assert finetune.model.optimizer.lr == 4e-6
    assert finetune.model.net.flow_method == "weighted_argmax" and finetune.model.net.window == 20
    assert finetune.model.net.smoothness_loss
    assert finetune.require_init_from and finetune.model.init_from is None
    assert finetune.model.smoothness_curriculum.step_offset == 141_000
    assert finetune.model.smoothness_curriculum.end_value == 200.0


@pytest.mark.parametrize("experiment", ["kubric", "kinetics", "kinetics_finetune"])
def test_experiment_files_state_only_what_differs(experiment):
    """A value an experiment file sets must differ from what the file inherits, or it is noise."""
    from pathlib import Path

    import yaml

    text = yaml.safe_load((config_dir() / "experiment" / f"{experiment}.yaml").read_text())
    parents = [d for d in text.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    groups = [d for d in text.get("defaults", []) if isinstance(d, dict)]
    base = compose_train(
        [f"experiment={parents[0]}"]
        if parents
        else [f"{k.split()[-1].lstrip('/')}={v}" for d in groups for k, v in d.items()]
    )
    base = OmegaConf.to_container(base, resolve=False)

    def leaves(node, prefix=()):
        if isinstance(node, dict):
            for key, value in node.items():
                if key != "defaults":
                    yield from leaves(value, (*prefix, key))
        else:
            yield prefix, node

    for path, value in leaves(text):
        inherited = base
        for key in path:
            inherited = inherited.get(key) if isinstance(inherited, dict) else None
        assert inherited != value, f"{experiment}.yaml restates {'.'.join(path)}={value!r}"
    assert Path(config_dir() / "experiment" / f"{experiment}.yaml").is_file()


def test_command_line_group_override_beats_experiment():
    cfg = compose_train(["experiment=kinetics", "trainer=ddp", "trainer.devices=4"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4


def test_learning_rate_scales_with_world_size_by_default():
    cfg = compose_train([])
    assert cfg.model.optimizer.scale_lr_with_world_size is True
