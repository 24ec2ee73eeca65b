"""Which checkpoint file to read: check files for damage, pick a run directory's newest intact one.

:func:`choose_checkpoint` is the one resolver every entry point uses: resuming (``ckpt_path``),
evaluating (``model.checkpoint``) and tracking (``--checkpoint``, ``gmrw.Predictor``).

Resuming, evaluating and tracking all accept a run directory (its files:
:mod:`gmrw.checkpoint.layout`) and read its newest intact checkpoint, naming every newer file
they skipped.

How a file is checked, and why both steps:

1. **Every record's CRC-32** (the zip central directory, then each member read through
   ``zipfile``). A file cut short by a kill or a full disk has no central directory; a damaged
   byte inside the tensor data fails its record's CRC. ``torch.load`` never verifies those
   CRCs: a flipped byte in a weight loads silently.
2. **The index through torch's weights-only unpickler**, ``mmap=True``: proves the archive's
   pickle decodes with the loader Lightning itself uses on resume (torch's default
   ``weights_only=True``), and holds what the caller needs (``global_step``, ``optimizer_states``,
   ... for a resume), without reading the tensors a second time.

"Newest" is the file's modification time (ties: the name), the order in which the trainer
wrote them. Files written by :class:`gmrw.checkpoint.write.AtomicCheckpointIO` appear
under their final name only once complete; an unfinished write is a hidden temporary file
(:data:`gmrw.checkpoint.layout.PARTIAL_GLOB`), never a candidate.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gmrw.checkpoint.layout import run_checkpoints, unfinished_writes
from gmrw.choices import ConfigError

# Keys a Lightning checkpoint needs for each use.
TRAINING_KEYS = ("state_dict", "global_step", "loops", "optimizer_states")
WEIGHTS_KEYS = ("state_dict",)

_READ_CHUNK = 1 << 20


log = logging.getLogger(__name__)


class CheckpointProblem(ConfigError):
    """No usable checkpoint where one was asked for; the message is one line for the user."""


@dataclass(frozen=True)
class CheckpointCheck:
    """The verdict on one file: ``problem`` is None when it is intact."""

    path: Path
    problem: str | None = None
    step: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class CheckpointChoice:
    """The file to read, and what was passed over on the way to it (newest first)."""

    path: Path
    step: int | None = None
    skipped: tuple[CheckpointCheck, ...] = ()
    unfinished: tuple[Path, ...] = ()

    def report(self) -> list[str]:
        """One line per skipped file and per leftover temporary file."""
        lines = [f"skipped {c.path}: {c.problem}" for c in self.skipped]
        lines += [unfinished_write_note(p) for p in self.unfinished]
        return lines


def unfinished_write_note(path: Path) -> str:
    """The warning for a temporary file that a checkpoint write left behind."""
    return f"ignored {path}: an unfinished checkpoint write (interrupted before its rename)"


def _crc_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue  # written with torch's CRC computation switched off: nothing to verify
                with archive.open(info) as member:
                    while member.read(_READ_CHUNK):
                        pass
    except zipfile.BadZipFile as err:
        if "CRC" in str(err):
            return f"damaged: {err}"
        return f"truncated or not a checkpoint archive ({err})"
    except (EOFError, OSError, ValueError) as err:
        return f"truncated or unreadable ({type(err).__name__}: {err})"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def check_checkpoint(
    path: str | os.PathLike, required_keys: Sequence[str] = TRAINING_KEYS
) -> CheckpointCheck:
    """Whether ``path`` is a whole, loadable Lightning checkpoint holding ``required_keys``."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        return CheckpointCheck(path, f"unreadable ({err.strerror or err})")
    if size == 0:
        return CheckpointCheck(path, "empty file")
    problem = _crc_problem(path)
    if problem is not None:
        return CheckpointCheck(path, problem)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, ... for one cause: unloadable
        return CheckpointCheck(path, f"does not load with torch's weights-only loader ({_first_line(err)})")
    if not isinstance(state, dict):
        return CheckpointCheck(path, f"not a Lightning checkpoint (holds a {type(state).__name__})")
    missing = [key for key in required_keys if key not in state]
    step = state.get("global_step")
    step = int(step) if isinstance(step, int) else None
    if missing:
        what = "training state" if "optimizer_states" in required_keys else "weights"
        return CheckpointCheck(path, f"holds no {what} (no {', '.join(missing)})", step)
    return CheckpointCheck(path, None, step)


def newest_intact_checkpoint(
    run_dir: str | os.PathLike, required_keys: Sequence[str] = TRAINING_KEYS
) -> CheckpointChoice | None:
    """The run directory's newest intact checkpoint; None if it has no checkpoint files at all.

    Raises:
        CheckpointProblem: there are checkpoint files, but none is intact (each is named).
    """
    candidates = run_checkpoints(run_dir)
    if not candidates:
        return None
    skipped: list[CheckpointCheck] = []
    for candidate in candidates:
        check = check_checkpoint(candidate, required_keys)
        if check.intact:
            return CheckpointChoice(candidate, check.step, tuple(skipped), tuple(unfinished_writes(run_dir)))
        skipped.append(check)
    details = "; ".join(f"{c.path.name}: {c.problem}" for c in skipped)
    raise CheckpointProblem(f"no intact checkpoint in {run_dir} ({details})")


def _in_directory(
    path: Path, spec: str | os.PathLike, key: str, required_keys: Sequence[str]
) -> CheckpointChoice:
    choice = newest_intact_checkpoint(path, required_keys)
    if choice is None:
        raise CheckpointProblem(
            f"{key}={spec} is a directory without checkpoints (looked for checkpoints/*.ckpt and hpc_ckpt_*.ckpt)"
        )
    return choice


def resolve_checkpoint(
    spec: str | os.PathLike, key: str = "ckpt_path", required_keys: Sequence[str] = TRAINING_KEYS
) -> CheckpointChoice:
    """A checkpoint file (checked), or a run directory (its newest intact checkpoint).

    ``key`` names the setting in messages (``ckpt_path``, ``model.checkpoint``, ``--checkpoint``).

    Raises:
        CheckpointProblem: with one line naming the file or directory and what is wrong.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return _in_directory(path, spec, key, required_keys)
    if not path.is_file():
        raise CheckpointProblem(f"{key}={spec}: no such checkpoint file")
    check = check_checkpoint(path, required_keys)
    if not check.intact:
        raise CheckpointProblem(f"{key}={spec}: {check.problem}")
    return CheckpointChoice(path, check.step)


def weights_file(spec: str | os.PathLike, key: str) -> CheckpointChoice:
    """For loading weights only (evaluation, tracking): a file as given, or a run directory's
    newest intact checkpoint.

    A file is not checked here: it may be the paper's ``.pth`` in any format torch reads, and
    the model loader says what is wrong with it.

    Raises:
        CheckpointProblem: no such file; a directory without checkpoints, or none intact.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return _in_directory(path, spec, key, WEIGHTS_KEYS)
    if not path.is_file():
        raise CheckpointProblem(f"{key}={spec}: no such file")
    return CheckpointChoice(path)


def choose_checkpoint(spec: str | os.PathLike, key: str, training: bool = False) -> CheckpointChoice:
    """The checkpoint to read for a setting: a file, or a run directory's newest intact
    checkpoint; each newer file skipped on the way is named in a warning.

    ``training``: the file must hold a whole training state (resuming) and is checked for damage;
    otherwise only weights are needed, and a file is taken as given (the paper's ``.pth`` may be
    any format torch reads; the model loader says what is wrong with it).

    Raises:
        CheckpointProblem: one line naming ``key``, the file or directory and the problem.
    """
    choice = resolve_checkpoint(spec, key) if training else weights_file(spec, key)
    for line in choice.report():
        log.warning("%s", line)
    return choice
