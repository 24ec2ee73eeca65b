"""Where checkpoints lie on disk: a run directory's checkpoint files, and the names of unfinished writes.

A training run directory holds Lightning checkpoints in ``checkpoints/`` (``step=NNNNNNN.ckpt``,
``last.ckpt``) and, after a SLURM requeue signal, Lightning's ``hpc_ckpt_N.ckpt`` at its top. The
writer (:mod:`gmrw.checkpoint.write`) stages each file under a hidden temporary name; the chooser
(:mod:`gmrw.checkpoint.choose`) never takes such a file, and names the ones a killed write left.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_SUFFIX = ".ckpt"
# The writer's temporary files: hidden, and free of the target's name so that nothing globbing
# for checkpoints (ours, Lightning's hpc_ckpt_* numbering) ever counts them.
PARTIAL_PREFIX = ".checkpoint-"
PARTIAL_SUFFIX = ".partial"
PARTIAL_GLOB = f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"


def run_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint files of a run directory, newest first: ``checkpoints/*.ckpt`` and
    Lightning's SLURM ``hpc_ckpt_*.ckpt``. Symbolic links count as the files they point to."""
    run_dir = Path(run_dir)
    found = [
        *run_dir.glob(f"checkpoints/*{CHECKPOINT_SUFFIX}"),
        *run_dir.glob(f"hpc_ckpt_*{CHECKPOINT_SUFFIX}"),
    ]

    def age(path: Path) -> tuple[int, str]:
        try:
            return path.stat().st_mtime_ns, path.name
        except OSError:  # a dangling link: oldest, and reported as unreadable when reached
            return -1, path.name

    return sorted(found, key=age, reverse=True)


def unfinished_writes(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files of checkpoint writes that never reached their rename."""
    run_dir = Path(run_dir)
    return sorted([*run_dir.glob(f"checkpoints/{PARTIAL_GLOB}"), *run_dir.glob(PARTIAL_GLOB)])
