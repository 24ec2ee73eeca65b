"""Checks of a composed ``train`` config that build nothing: each setting that cannot work
becomes one :class:`~gmrw.choices.ConfigError` line naming it and the fix, before any dataset,
model, logger or trainer exists (``gmrw-train`` prints it without a traceback).

The constructors check their arguments too; these checks come first so that the message names
the config key (``model.net.flow_method``, not "flow method") and a missing or wrong dataset
folder is found in a second, not after the model was built and the trainer started.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from gmrw.choices import (
    ATTENTION_TYPES,
    FLOW_METHODS,
    LR_DECAYS,
    QUERY_MODES,
    TAPVID_FORMATS,
    ConfigError,
    check_choice,
)
from gmrw.tracking import TrackingOptions, resolve_options


def check_train_config(cfg: DictConfig) -> None:
    """ConfigError for the first setting of ``cfg`` that cannot work (see the module docstring)."""
    check_required_values(cfg)
    check_model_settings(cfg)
    check_data_settings(cfg)


def check_required_values(cfg: DictConfig) -> None:
    """Every ``???`` of the config given a value on the command line."""
    missing = sorted(missing_keys(cfg))
    if not missing:
        return
    key = missing[0]
    if key == "data.root":
        target = OmegaConf.select(cfg, "data.train_set._target_", default="the dataset")
        raise ConfigError(
            f"data.root is required for {str(target).rsplit('.', 1)[-1]}: pass the dataset location, "
            "e.g. data.root=/path/to/dataset"
        )
    raise ConfigError(f"{key} is required: pass {key}=<value>")


def missing_keys(node: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Full keys of the ``???`` values under ``node``, found without resolving any interpolation
    (``OmegaConf.missing_keys`` resolves them, and one pointing at a ``???`` raises). Hydra's own
    node, present when a config is composed outside a run, is Hydra's business."""
    found = []
    keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
    for key in keys:
        if not prefix and key == "hydra":
            continue
        full_key = f"{prefix.rstrip('.')}[{key}]" if isinstance(key, int) else f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            found.append(full_key)
        elif not OmegaConf.is_interpolation(node, key) and OmegaConf.is_config(node[key]):
            found += missing_keys(node[key], full_key + ".")
    return found


def check_model_settings(cfg: DictConfig) -> None:
    """The network's named choices, how the model tracks, its optimiser and validation."""
    net = cfg.model.net
    check_choice(net.get("flow_method", "weighted_sum"), FLOW_METHODS, "model.net.flow_method")
    if net.get("flow_method") == "weighted_argmax" and net.get("window") is None:
        raise ConfigError(
            "model.net.flow_method=weighted_argmax needs model.net.window, a radius in feature cells "
            "(e.g. model.net.window=2)"
        )
    check_choice(net.get("attention_type", "swin"), ATTENTION_TYPES, "model.net.attention_type")
    tracking = _set_values(cfg.model.get("tracking"))
    validation_tracking = _set_values(cfg.model.get("validation_tracking"))
    try:
        TrackingOptions(**tracking)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.tracking: {error}") from None
    try:
        # Validation's options replace the model's own (as GMRWLitModule tracks).
        resolve_options(SimpleNamespace(tracking_defaults=tracking), **validation_tracking)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.validation_tracking: {error}") from None
    check_choice(cfg.model.optimizer.get("decay", "constant"), LR_DECAYS, "model.optimizer.decay")
    check_choice(
        (cfg.model.get("validation") or {}).get("query_mode", "first"),
        QUERY_MODES,
        "model.validation.query_mode",
    )


def check_data_settings(cfg: DictConfig) -> None:
    """The dataset folder looks like the dataset (cheaply), and the validation sets are named right."""
    data = cfg.data
    train_set = data.get("train_set")
    root = train_set.get("root") if train_set is not None else None
    check = _root_check(train_set)
    if root is not None and check is not None:
        try:
            check(str(Path(str(root)).expanduser()), train_set.get("split", "train"))
        except FileNotFoundError as error:
            raise ConfigError(f"data.root={data.get('root', root)}: {error}") from None
    for name, val_set in (data.get("val_sets") or {}).items():
        if val_set is not None and "query_mode" in val_set:
            check_choice(val_set.query_mode, QUERY_MODES, f"data.val_sets.{name}.query_mode")
    val = data.get("val")
    if val is not None:
        check_choice(val.get("format"), TAPVID_FORMATS, "data.val.format")
        check_choice(val.get("query_mode", "first"), QUERY_MODES, "data.val.query_mode")
        path = val.get("path")
        if not path:
            raise ConfigError(f"data.val.path is required for the {val.format} validation set")
        # val_optional: the experiment trains without it and says so at start-up (ClipDataModule)
        if not Path(str(path)).expanduser().exists() and not data.get("val_optional", False):
            raise ConfigError(f"data.val.path={path}: no such file or folder (data.val_optional=true trains without it)")


def _root_check(train_set: DictConfig | None):
    """The training dataset class's cheap ``check_root(root, split)``, if it has one."""
    if train_set is None or "_target_" not in train_set:
        return None
    try:
        dataset = hydra.utils.get_class(train_set._target_)
    except Exception:  # a _target_ that does not import: instantiating it says why
        return None
    return getattr(dataset, "check_root", None)


def _set_values(node: Any) -> dict[str, Any]:
    """The entries of a config node that are set (not null)."""
    if node is None:
        return {}
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if v is not None}
