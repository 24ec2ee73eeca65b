"""A tiny Kinetics-700-2020 folder: ``root/{train,val}/<class>/<id>.mp4`` (H.264 via imageio-ffmpeg),
optionally with a truncated and a zero-byte video planted in ``train/``."""

from __future__ import annotations

import os
from pathlib import Path

from gmrw.datatools.tiny.videos import textured_video
from gmrw.video import write_video


def write_tiny_kinetics(
    root: str | os.PathLike,
    splits: tuple[str, ...] = ("train", "val"),
    classes: tuple[str, ...] = ("abseiling", "playing cello"),
    videos_per_class: int = 2,
    num_frames: int = 30,
    size: tuple[int, int] = (48, 64),
    fps: int = 25,
    bad_files: bool = True,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Write a Kinetics-700-2020-style folder; returns ``{"good": [...], "bad": [...]}``.

    With ``bad_files`` two broken videos are planted in the first split: a truncated mp4
    (first 600 bytes of a valid one, so the container header is cut) and a zero-byte file.
    One video per class is short (a third of ``num_frames``) so that frame-gap clamping is exercised.
    """
    root = Path(root)
    good: list[Path] = []
    bad: list[Path] = []
    k = 0
    for split in splits:
        for ci, cls in enumerate(classes):
            for v in range(videos_per_class):
                n = num_frames if v % 2 == 0 else max(2, num_frames // 3)
                frames = textured_video(n, size[0], size[1], seed=seed + k)
                good.append(
                    write_video(root / split / cls / f"vid{ci}{v:02d}_000000_000010.mp4", frames, fps)
                )
                k += 1
    if bad_files and splits:
        first = root / splits[0] / classes[0]
        data = good[0].read_bytes()
        truncated = first / "truncated_000000_000010.mp4"
        truncated.write_bytes(data[:600])
        empty = first / "empty_000000_000010.mp4"
        empty.write_bytes(b"")
        bad += [truncated, empty]
    return {"good": good, "bad": bad}
