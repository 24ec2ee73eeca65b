"""Read a checkpoint: build a GMRW and load weights from the paper's ``.pth``, our Lightning ``.ckpt`` or a
state dict (:func:`load_model`, public as ``gmrw.load_model``).

Loading always goes through torch's weights-only unpickler; the paper's checkpoints carry an
``argparse.Namespace`` (and a ``torch.device``) under "args", which are allow-listed for that
one call. Weights load strictly: a file that is not a GMRW checkpoint fails with a message
that says what was found.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import torch

from gmrw.checkpoint.choose import choose_checkpoint
from gmrw.models.gmrw import GMRW

_SAFE_GLOBALS = [argparse.Namespace, torch.device]
# the paper's training arguments that configure the model, and our constructor names for them
_PAPER_ARGS = {
    "temp": "temperature",
    "compute_flow_method": "flow_method",
    "window_threshold": "window",
    "smoothness_loss": "smoothness_loss",
    "smoothness_edge_constant": "smoothness_edge_constant",
}


# How the paper's released weights were evaluated on TAP-Vid's 256×256 frames (its best DAVIS setting,
# experiments/eval_*_davis_upsampled.sh): chained tracking, frames upsampled ×4. Expressed as the
# short side the model sees, so other video sizes are brought to the same scale.
PAPER_TRACKING = {"mode": "chained", "method": "weighted_sum", "processing_size": 1024}
# Older checkpoints of ours kept these tracking options among their validation settings.
_LEGACY_VALIDATION_TRACKING = ("mode", "method", "window", "upsample_factor")


class CheckpointError(ValueError):
    """The file is not a checkpoint this model can load."""


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """The object stored in a checkpoint file, through torch's weights-only unpickler (the paper's
    ``argparse.Namespace`` and ``torch.device`` allow-listed). Raises :class:`CheckpointError` for a
    file that loader refuses, FileNotFoundError for a missing one."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        # torch's own message suggests weights_only=False, which we never do implicitly
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a readable GMRW checkpoint (paper .pth, gmrw .ckpt or "
            f"state dict): torch's weights-only loader failed with {type(err).__name__}"
        ) from err


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def tracking_defaults(obj: Any) -> dict[str, Any]:
    """How the model in a loaded checkpoint object tracks by default (gmrw.track's options).

    Our checkpoints carry the training config's ``tracking`` (older ones: the tracking keys of
    ``validation``); the paper's ``.pth`` gets the paper's documented setting; anything else none.
    The options are checked when the model tracks (:func:`gmrw.tracking.resolve_options`).
    """
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        return dict(PAPER_TRACKING)
    hparams = obj.get("hyper_parameters") if isinstance(obj, Mapping) else None
    if not isinstance(hparams, Mapping):
        return {}
    if hparams.get("tracking"):
        stored = dict(hparams["tracking"])
    else:
        validation = dict(hparams.get("validation") or {})
        stored = {k: validation.get(k) for k in _LEGACY_VALIDATION_TRACKING}
    return {k: v for k, v in stored.items() if v is not None}


def parse_checkpoint(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A loaded checkpoint object → (state dict with the paper's key names, constructor kwargs).

    Understands: the paper's DDP dict {"model": {"module.<key>": ...}, "args": Namespace};
    our Lightning dict {"state_dict": {"model.<key>": ...}, "hyper_parameters": {"net": {...}}};
    {"state_dict": ..., "config": {...}} (the reference fixture) and a bare state dict.
    """
    kwargs: dict[str, Any] = {}
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        state = _strip(obj["model"], "module.")
        args = obj.get("args")
        args = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
        kwargs = {ours: args[theirs] for theirs, ours in _PAPER_ARGS.items() if theirs in args}
    elif isinstance(obj, Mapping) and _is_state_dict(obj.get("state_dict")):
        state = dict(obj["state_dict"])
        if "hyper_parameters" in obj:
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
            net = (obj.get("hyper_parameters") or {}).get("net") or {}
            kwargs = {k: v for k, v in dict(net).items() if not k.startswith("_")}
        else:
            kwargs = dict(obj.get("config") or {})
        state = _strip(state, "module.")
    elif _is_state_dict(obj):
        state = _strip(obj, "module.")
    else:
        found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"no GMRW weights found in checkpoint (top level: {found})")
    if kwargs.pop("norm", True) is not True:
        raise CheckpointError("checkpoint expects unnormalised inputs (norm=False); gmrw always normalises")
    return state, kwargs


def load_model(
    checkpoint: str | os.PathLike | None = None, map_location: Any = "cpu", **model_kwargs: Any
) -> GMRW:
    """A GMRW in eval mode: random init (``None``) or weights from ``checkpoint`` (a file, or a run
    directory: its newest intact checkpoint, as ``gmrw-track --checkpoint`` reads it).

    Constructor kwargs stored in the checkpoint are used unless overridden by ``model_kwargs``.
    ``model.tracking_defaults`` is set from the checkpoint (:func:`tracking_defaults`), so
    ``gmrw.track(model, video, queries)`` tracks the way that model was meant to.
    Raises :class:`CheckpointError` (a ValueError) for files that hold no matching GMRW weights.
    """
    if checkpoint is None:
        return GMRW(**model_kwargs).eval()
    if os.path.isdir(checkpoint):  # a run directory, as every command line accepts: its newest intact file
        checkpoint = choose_checkpoint(checkpoint, "checkpoint").path
    obj = read_checkpoint(checkpoint, map_location)
    state, stored = parse_checkpoint(obj)
    stored = {k: v for k, v in stored.items() if k in _constructor_names()}
    model = GMRW(**{**stored, **model_kwargs})
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{os.fspath(checkpoint)!r} does not match the GMRW architecture: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:4]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:4]}"
        )
    model.tracking_defaults = tracking_defaults(obj)
    return model.eval()


def _constructor_names() -> set[str]:
    import inspect

    return set(inspect.signature(GMRW.__init__).parameters) - {"self"}
