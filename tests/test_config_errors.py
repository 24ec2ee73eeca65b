"""Bad settings of ``gmrw-train`` / ``gmrw-eval`` answered in one line, before anything is built.

In-process tests of the checks (fast); ``test_cli_errors.py`` runs the console scripts."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from gmrw.choices import ConfigError
from gmrw.cli.errors import find_cause, hydra_error_line
from gmrw.data.kinetics import KineticsPairs
from gmrw.data.kubric import KubricPairs
from gmrw.training.config_checks import check_train_config
from helpers import compose_config, compose_train


def _check(overrides: list[str]) -> None:
    check_train_config(compose_train(overrides))


def test_default_and_paper_configs_pass(tmp_path):
    _check([])
    _check(["experiment=synthetic_long"])
    kinetics = tmp_path / "k700"
    (kinetics / "train" / "abseiling").mkdir(parents=True)
    (kinetics / "train" / "abseiling" / "a_000001_000011.mp4").write_bytes(b"not decoded by the check")
    _check(["experiment=kinetics", f"data.root={kinetics}"])


def test_missing_data_root_is_named():
    with pytest.raises(
        ConfigError, match=r"^data.root is required for KineticsPairs: pass the dataset location"
    ):
        _check(["experiment=kinetics", "trainer=cpu"])


@pytest.mark.parametrize(
    "layout, message",
    [
        (None, r"Kinetics root .* does not exist: expected ROOT/train/<class name>/<video id>.mp4"),
        ([], r"Kinetics split folder .*/train does not exist"),
        (["train/abseiling/notes.txt"], r"no videos found in .*/train"),
    ],
)
def test_kinetics_root_is_checked_cheaply(tmp_path, layout, message):
    root = tmp_path / "k700"
    for relative in layout or []:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")
    if layout is not None:
        root.mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match=rf"^data.root={root}: {message}"):
        _check(["experiment=kinetics", "trainer=cpu", f"data.root={root}"])
    with pytest.raises(FileNotFoundError):
        KineticsPairs.check_root(root, "train")


def test_kubric_root_is_checked_cheaply(tmp_path):
    with pytest.raises(ConfigError, match=rf"^data.root={tmp_path}: no movi_e/256x256 TFDS folder under"):
        _check(["experiment=kubric", "trainer=cpu", f"data.root={tmp_path}"])
    version = tmp_path / "movi_e" / "256x256" / "1.0.0"
    version.mkdir(parents=True)
    for name in ("features.json", "dataset_info.json"):
        (version / name).write_text("{}")
    with pytest.raises(FileNotFoundError, match="no movi_e-train.tfrecord"):
        KubricPairs.check_root(tmp_path, "train")
    (version / "movi_e-train.tfrecord-00000-of-00001").write_bytes(b"")
    KubricPairs.check_root(tmp_path, "train")  # the layout is there: reading records is not its job


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.net.flow_method=weighted_argmx",
            "unknown model.net.flow_method 'weighted_argmx'; choose one of "
            "['weighted_sum', 'argmax', 'weighted_argmax']",
        ),
        (
            "model.net.flow_method=weighted_argmax",
            "model.net.flow_method=weighted_argmax needs model.net.window",
        ),
        (
            "model.net.attention_type=swn",
            "unknown model.net.attention_type 'swn'; choose one of ['swin', 'full']",
        ),
        ("model.tracking.mode=chaned", "model.tracking: unknown tracking mode 'chaned'"),
        ("model.validation_tracking.processing_size=3", "model.validation_tracking: processing_size must be"),
        ("model.optimizer.decay=cosin", "unknown model.optimizer.decay 'cosin'"),
        ("model.validation.query_mode=frist", "unknown model.validation.query_mode 'frist'"),
        ("data.val_sets.val.query_mode=frist", "unknown data.val_sets.val.query_mode 'frist'"),
        ("+data.val={format:tapvid_davis,path:/nonexistent.pkl}", r"data.val.path=/nonexistent.pkl: no such"),
    ],
)
def test_bad_model_and_data_settings_are_named(override, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        _check([override])


def test_eval_checks_data_before_loading_the_model(tmp_path):
    from gmrw.evaluation.run import validate_config

    def check(*overrides):
        validate_config(compose_config("eval", ["model.checkpoint=null", *overrides]))

    with pytest.raises(
        ConfigError, match=r"^data.path=/nonexistent.pkl: no such file or folder \(tapvid_davis: "
    ):
        check("data.path=/nonexistent.pkl")
    with pytest.raises(ConfigError, match=r"^unknown data.query_mode 'frist'"):
        check(f"data.path={tmp_path}", "data.query_mode=frist")
    with pytest.raises(ConfigError, match=r"^unknown model.net.attention_type 'swn'"):
        check(f"data.path={tmp_path}", "model.net.attention_type=swn")


def _hydra_error(overrides: list[str], config: str = "train") -> Exception:
    with pytest.raises(Exception) as caught:
        compose_config(config, overrides)
    return caught.value


def test_hydra_composition_errors_become_one_line():
    error = _hydra_error(["experiment=kinetic"])
    assert isinstance(error, MissingConfigException)
    assert hydra_error_line(error) == (
        "unknown experiment=kinetic; choose one of: kinetics, kinetics_finetune, kubric, synthetic, synthetic_long"
    )
    error = _hydra_error(["trainer.max_step=3"])
    assert isinstance(error, ConfigCompositionException)
    assert hydra_error_line(error) == (
        "trainer.max_step is not a setting (did you mean trainer.max_steps?); "
        "to add a new key, prefix the override with +"
    )
    error = _hydra_error(["foo"])
    assert isinstance(error, OverrideParseException)
    line = hydra_error_line(error)
    assert "\n" not in line and line.startswith("Error parsing override 'foo'; missing EQUAL")


def test_find_cause_follows_raise_from_only():
    class Wrapper(Exception):
        pass

    cause = ConfigError("bad")
    try:
        try:
            raise cause
        except ConfigError as error:
            raise Wrapper("wrapped") from error
    except Wrapper as wrapped:
        assert find_cause(wrapped, (ConfigError,)) is cause
    try:
        try:
            raise ConfigError("handled")
        except ConfigError:
            raise RuntimeError("a bug while handling it")  # noqa: B904 (the point of the test)
    except RuntimeError as bug:
        assert find_cause(bug, (ConfigError,)) is None
