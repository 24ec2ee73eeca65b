"""Tiny datasets in the real on-disk formats, for ``gmrw-data tiny`` (smoke runs), tests and
benchmarks. Everything here writes small files into a folder you give it; nothing is downloaded.

* :func:`write_tiny_kinetics`: a Kinetics-700-2020 folder of mp4s (:mod:`~gmrw.datatools.tiny.kinetics`);
* :func:`write_tiny_movi_e`: a MOVi-E TFDS folder with every feature, geometrically consistent
  (:mod:`~gmrw.datatools.tiny.movi_e`, scenes from :mod:`~gmrw.datatools.tiny.cuboids`);
* :func:`write_tapvid_pickle`, :func:`write_kubric_tsv`: TAP-Vid files (:mod:`~gmrw.datatools.tiny.tapvid`);
* :func:`write_tiny`: the right one for a ``gmrw-data`` format name.
"""

from __future__ import annotations

from pathlib import Path

from gmrw.datatools.tiny.kinetics import write_tiny_kinetics
from gmrw.datatools.tiny.movi_e import write_tiny_movi_e
from gmrw.datatools.tiny.tapvid import write_kubric_tsv, write_tapvid_pickle
from gmrw.datatools.tiny.videos import textured_video

__all__ = [
    "textured_video",
    "write_kubric_tsv",
    "write_tapvid_pickle",
    "write_tiny",
    "write_tiny_kinetics",
    "write_tiny_movi_e",
]


def write_tiny(path: str, fmt: str) -> str:
    """A tiny copy of dataset format ``fmt`` (a ``gmrw-data check`` format) under ``path``; returns
    what to point the reader at."""
    if fmt == "kinetics":
        write_tiny_kinetics(path)
        return path
    if fmt in ("kubric", "tapvid_kubric"):
        return str(write_tiny_movi_e(path))
    if fmt == "tapvid_kubric_tsv":
        return str(write_kubric_tsv(Path(path) / "validation_data.tsv"))
    if fmt == "tapvid_kinetics":
        return str(write_tapvid_pickle(Path(path) / "0000_of_0010.pkl", "kinetics"))
    kind = fmt.removeprefix("tapvid_")
    return str(write_tapvid_pickle(Path(path) / f"{fmt}.pkl", kind))
