"""Checkpoint files that are whole or absent: Lightning's ``CheckpointIO`` with atomic local writes.

Every checkpoint the trainer writes (periodic, ``last.ckpt``, end of fit, SLURM's ``hpc_ckpt``,
the one saved on SIGTERM) goes through the trainer's ``CheckpointIO`` plug-in. Lightning's own
``TorchCheckpointIO`` stages the bytes in the system's temporary folder and moves them over,
which is a copy (not a rename) when that folder is on another file system, and never fsyncs.
Here the archive is written to a hidden temporary file in the checkpoint's own folder, flushed,
fsynced and renamed over the final name (then the folder is fsynced so the rename survives a
power cut): a reader, a kill at any moment or a full disk can never see a half-written file
under a checkpoint's name, and the previous file of that name stays until the new one is whole.

Enabled by ``configs/trainer/default.yaml`` (``plugins``); remote URLs (``s3://`` ...) fall back
to Lightning's own writer.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from gmrw.checkpoint.layout import PARTIAL_GLOB, PARTIAL_PREFIX, PARTIAL_SUFFIX

log = logging.getLogger(__name__)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file, its folder and the cause
    (``errno`` is the underlying error's, e.g. ``errno.ENOSPC``)."""


def _write_error(err: OSError, target: Path, note: str = "") -> CheckpointWriteError:
    error = CheckpointWriteError(
        f"cannot write checkpoint {target.name} in {target.parent}: {err.strerror or err}{note}"
    )
    error.errno = err.errno
    return error


def _is_local(path: str | os.PathLike) -> bool:
    text = os.fspath(path)
    return "://" not in text or text.startswith("file://")


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems refuse to open folders; the rename itself has happened
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# Temporary files of writes under way in this process. A write can start while another is under
# way: Lightning's SLURM handler saves hpc_ckpt_N.ckpt from inside a signal handler.
_WRITING: set[Path] = set()


def remove_unfinished_writes(folder: Path) -> list[Path]:
    """Delete temporary files left by writes that died before their rename (one writer per folder:
    global rank 0 of the one run that owns it), sparing this process's writes under way."""
    removed = []
    for partial in folder.glob(PARTIAL_GLOB):
        if partial in _WRITING:
            continue
        try:
            partial.unlink()
            removed.append(partial)
        except FileNotFoundError:
            pass
    return removed


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` such that ``path`` is, at every moment, the old file or the whole new one.

    Raises:
        CheckpointWriteError: the write failed (no space, no permission, ...); ``path`` is untouched
            and the temporary file is removed.
    """
    target = Path(os.fspath(path).removeprefix("file://"))
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in remove_unfinished_writes(folder):
            log.info("removed %s, left by a checkpoint write that was interrupted", stale)
        descriptor, temp_name = tempfile.mkstemp(dir=folder, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
    except OSError as err:
        raise _write_error(err, target) from err
    temp = Path(temp_name)
    _WRITING.add(temp)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            # mkstemp creates the file private (0600); give it the mode an ordinary open would.
            os.fchmod(handle.fileno(), 0o666 & ~_current_umask())
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as err:
        # Any failure (a full disk, a KeyboardInterrupt) leaves the final name as it was.
        temp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(err, target, " (the checkpoints already there are untouched)") from err
        raise
    finally:
        _WRITING.discard(temp)
    # Make the rename itself durable.
    _fsync_folder(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose local writes are atomic (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        atomic_torch_save(checkpoint, path)
