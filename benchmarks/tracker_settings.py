"""The checkpoints and ``--setting`` strings the benchmarks take (photo_benchmark.py,
footage_benchmark.py): a checkpoint argument → its file, ``MODE@SIZE[/FINE][@ROUND_TRIP[@METHOD[:WINDOW]]]``
→ :func:`gmrw.track` options, resolved options → a table row's name, and the progress bar of a
tracker's run.

MODE is ``chained`` or ``direct``, the latter optionally with ``+chain`` (the candidate chained
from the previous frame, ``chained_candidate``) and ``+correct`` (``round_trip_correction``); SIZE is the short side the model sees; FINE the short side
the fine-match step's maps are computed at (``fine_size``; 0: the video's own); ROUND_TRIP direct
mode's round-trip occlusion check in px (``-`` for none); METHOD the flow read-out, with its WINDOW
in feature cells. No ``--setting`` means the checkpoint's own tracking defaults.

A direct MODE is complete: ``direct`` scores neither the candidate nor the correction, even for a
checkpoint that records them (so one string names one tracking on every checkpoint); FINE,
ROUND_TRIP, METHOD and WINDOW left out take the checkpoint's own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gmrw.checkpoint import CheckpointProblem, choose_checkpoint

SETTING_FORMAT = "MODE@SIZE[/FINE][@ROUND_TRIP[@METHOD[:WINDOW]]]"


def parse_setting(text: str) -> dict:
    """``"direct@128@8@weighted_argmax:3"`` → ``{"mode": "direct", "processing_size": 128,
    "chained_candidate": False, "round_trip_correction": False, "round_trip": 8.0,
    "method": "weighted_argmax", "window": 3.0}`` (``"direct+chain@…"``: ``"chained_candidate":
    True``, ``"+correct"``: ``"round_trip_correction": True``, ``"direct@160/256"`` adds
    ``"fine_size": 256``); ValueError naming the format."""
    parts = text.split("@")
    problem = f"--setting {text!r} is not {SETTING_FORMAT} (e.g. chained@256, direct@128@8@weighted_argmax:3, direct+chain@160/256@16)"
    size, slash, fine = parts[1].partition("/") if len(parts) > 1 else ("", "", "")
    if not 2 <= len(parts) <= 4 or not size.isdigit() or (slash and not fine.isdigit()):
        raise ValueError(problem)
    mode, *extras = parts[0].split("+")
    if not set(extras) <= {"chain", "correct"} or len(set(extras)) != len(extras):
        raise ValueError(problem)
    options: dict = {"mode": mode, "processing_size": int(size)}
    if slash:
        options["fine_size"] = int(fine)
    if mode == "direct":
        options["chained_candidate"] = "chain" in extras
        options["round_trip_correction"] = "correct" in extras
    elif extras:
        raise ValueError(problem)  # the candidate and the correction are direct mode's
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
    if resolved.fine_size is not None:
        scale += f", fine step at {resolved.fine_size or 'the video size'}"
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
    mode = resolved.mode
    if resolved.mode == "direct":
        mode += " + chained candidate" if resolved.chained_candidate else ""
        mode += " + round-trip correction" if resolved.round_trip_correction else ""
    return f"GMRW {checkpoint.name} ({mode}, {scale}{trip}{readout})"


def tracker_progress(name: str, unit: str, iterable=None, total: int | None = None):
    """A tqdm bar on stderr for one tracker's run over a benchmark's ``unit``s (videos, segments):
    ``name`` cut to 40 characters, every item shown (a checkpoint at 256 px takes minutes an item,
    one thread), cleared when done so stdout's tables stay the record."""
    from tqdm.auto import tqdm

    desc = name if len(name) <= 40 else name[:39] + "…"
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, mininterval=0)
