"""The named choices of gmrw's settings and their checks, in one place every layer imports.

A bad value raises :class:`ConfigError` (a ``ValueError``) whose one-line message names the
setting and lists the valid choices; the command-line tools print it without a traceback.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

#: The feature transformer's attention: shifted 2x2 windows on alternate layers (the paper's), or
#: every cell attending to every cell (the network treats any value but "swin" so).
ATTENTION_TYPES = ("swin", "full")
#: How flows become tracks (:func:`gmrw.track`): consecutive-frame flows or flows from the query frame.
TRACKING_MODES = ("chained", "direct")
#: How a transition row becomes a target position: expectation, argmax, or the expectation within
#: ``window`` feature cells of the argmax.
FLOW_METHODS = ("weighted_sum", "argmax", "weighted_argmax")
#: How TAP-Vid queries are sampled from tracks (and scored): each track's first visible frame, or
#: every 5th frame where it is visible.
QUERY_MODES = ("first", "strided")
#: Which frames ``first`` mode scores: today's tapnet rule, or the paper's copy of the old one.
FIRST_MODE_RULES = ("tapnet", "reference_2022")
#: TAP-Vid benchmark file formats (:class:`gmrw.data.tapvid.TapVidDataset`).
TAPVID_FORMATS = (
    "tapvid_davis",
    "tapvid_rgb_stacking",
    "tapvid_kinetics",
    "tapvid_kubric",
    "tapvid_kubric_tsv",
)
#: Every dataset format ``gmrw-data check`` / ``tiny`` know: the training sets and the TAP-Vid ones.
DATASET_FORMATS = ("kubric", "kinetics", *TAPVID_FORMATS)
#: The arithmetic of the model's encoder and transformer while tracking (:mod:`gmrw.tracking.precision`).
TRACKING_PRECISIONS = ("fp32", "bf16", "auto")
#: The learning rate after warm-up: constant (the paper's), or a cosine to 0 at the last step.
LR_DECAYS = ("constant", "cosine")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming it, for the user."""


def check_choice(value: Any, choices: Collection[str], what: str) -> None:
    """ConfigError unless ``value`` is one of ``choices`` (``what`` names the setting)."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {list(choices)}")


def check_flow_method(method: str, window: float | None) -> None:
    """A known flow method, with the window radius that ``weighted_argmax`` needs."""
    check_choice(method, FLOW_METHODS, "flow method")
    if method == "weighted_argmax" and window is None:
        raise ConfigError("flow method 'weighted_argmax' needs a window radius in feature cells (window=...)")
