"""Free space: measured before a download starts (and before a zip is unpacked), never guessed after."""

from __future__ import annotations

import shutil
from pathlib import Path


class InsufficientSpace(Exception):
    """The target file system cannot hold what would be written."""


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    raise FileNotFoundError(path)  # unreachable: "/" exists


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
