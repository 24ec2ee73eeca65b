"""The Kinetics-700-2020 folder layout: ``root/<split>/<class>/<youtube id>_<start>_<end>.mp4``
(``split`` is ``train`` or ``val``), as the CVDF download scripts and ``gmrw-data download`` leave it."""

from __future__ import annotations

import os
from pathlib import Path

from gmrw.video import VIDEO_EXTENSIONS

KINETICS_LAYOUT = (
    "expected ROOT/{split}/<class name>/<video id>.mp4 (Kinetics-700-2020 as downloaded by the cvdf scripts)"
)


def check_root(root: str | os.PathLike, split: str) -> None:
    """FileNotFoundError naming what is missing unless ``root/split`` holds a class folder with a
    video in it. Cheap: it stops at the first video (listing all of Kinetics takes a while)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Kinetics root {root} does not exist: {KINETICS_LAYOUT.format(split=split)}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"Kinetics split folder {split_dir} does not exist: {KINETICS_LAYOUT.format(split=split)}"
        )
    if next(_videos_in(split_dir), None) is None:
        raise FileNotFoundError(f"no videos found in {split_dir}: {KINETICS_LAYOUT.format(split=split)}")


def _videos_in(split_dir: Path):
    """The video files of ``split_dir/<class>/``, lazily, in directory order."""
    return (p for p in split_dir.glob("*/*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def list_videos(root: str | os.PathLike, split: str) -> list[Path]:
    """Sorted ``root/split/*/*.{mp4,...}``; raises with the expected layout when missing or empty."""
    check_root(root, split)
    return sorted(_videos_in(Path(root) / split))
