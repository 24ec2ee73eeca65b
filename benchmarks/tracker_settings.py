"""The checkpoints and ``--setting`` strings the benchmarks take (photo_benchmark.py,
footage_benchmark.py): a checkpoint argument → its file, ``MODE@SIZE[@ROUND_TRIP[@METHOD[:WINDOW]]]``
→ :func:`gmrw.track` options, and resolved options → a table row's name.

MODE is ``chained``, ``direct`` or ``direct+chain`` (direct with the candidate chained from the
previous frame, ``chained_candidate``); SIZE is the short side the model sees; ROUND_TRIP direct
mode's round-trip occlusion check in px (``-`` for none); METHOD the flow read-out, with its WINDOW
in feature cells. No ``--setting`` means the checkpoint's own tracking defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gmrw.checkpoint import CheckpointProblem, choose_checkpoint

SETTING_FORMAT = "MODE@SIZE[@ROUND_TRIP[@METHOD[:WINDOW]]]"


def parse_setting(text: str) -> dict:
    """``"direct@128@8@weighted_argmax:3"`` → ``{"mode": "direct", "processing_size": 128,
    "round_trip": 8.0, "method": "weighted_argmax", "window": 3.0}`` (``"direct+chain@…"`` adds
    ``"chained_candidate": True``); ValueError naming the format."""
    parts = text.split("@")
    problem = f"--setting {text!r} is not {SETTING_FORMAT} (e.g. chained@256, direct@128@8@weighted_argmax:3, direct+chain@160@16)"
    if not 2 <= len(parts) <= 4 or not parts[1].isdigit():
        raise ValueError(problem)
    mode, plus, extra = parts[0].partition("+")
    if plus and extra != "chain":
        raise ValueError(problem)
    options: dict = {"mode": mode, "processing_size": int(parts[1])}
    if plus:
        options["chained_candidate"] = True
    try:
        if len(parts) > 2 and parts[2] != "-":
            options["round_trip"] = float(parts[2])
        if len(parts) > 3:
            method, _, window = parts[3].partition(":")
            options["method"] = method
            options["window"] = float(window) if window else None
    except ValueError:
        raise ValueError(problem) from None
    return options


def checkpoint_file(checkpoint: str) -> Path:
    """A checkpoint argument: a file as given, a run directory → its newest intact checkpoint
    (:func:`gmrw.checkpoint.choose_checkpoint`, as ``gmrw-eval`` and ``gmrw-track`` resolve it).

    Raises:
        gmrw.checkpoint.CheckpointProblem: one line naming the argument and what is wrong.
    """
    return choose_checkpoint(checkpoint, "--checkpoint").path


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (repeatable) and ``--setting`` (repeatable), as both benchmarks take them."""
    parser.add_argument("--checkpoint", action="append", default=[], help="a gmrw .ckpt, run dir or .pth")
    parser.add_argument(
        "--setting", action="append", default=[], metavar=SETTING_FORMAT, help="tracking options to score"
    )


def parsed_trackers(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[Path], list[dict]]:
    """The checkpoint files and settings (``[{}]``: each checkpoint's own defaults) of
    :func:`add_tracker_arguments`; a bad one ends the program with ``parser.error``'s one line."""
    try:
        settings = [parse_setting(s) for s in args.setting] or [{}]
        checkpoints = [checkpoint_file(c) for c in args.checkpoint]
    except (ValueError, CheckpointProblem) as problem:
        parser.error(str(problem))
    return checkpoints, settings


def tracker_label(checkpoint: Path, resolved) -> str:
    """A table row's name for a checkpoint tracked with ``resolved`` (gmrw.tracking.TrackingOptions)."""
    scale = (
        f"short side {resolved.processing_size}"
        if resolved.processing_size
        else f"×{resolved.upsample_factor}"
    )
    trip = (
        f", round trip {resolved.round_trip:g} px"
        if resolved.round_trip and resolved.mode == "direct"
        else ""
    )
    readout = (
        f", {resolved.method}" + (f" window {resolved.window:g}" if resolved.window else "")
        if resolved.method != "weighted_sum"
        else ""
    )
    mode = (
        "direct + chained candidate"
        if resolved.chained_candidate and resolved.mode == "direct"
        else resolved.mode
    )
    return f"GMRW {checkpoint.name} ({mode}, {scale}{trip}{readout})"
