"""Unpack downloaded archives into our readers' layouts, all or nothing.

Every archive is first extracted into a temporary folder beside its destination (same file system), so a
corrupt or truncated archive raises :class:`CorruptArchiveError` naming it and leaves nothing behind;
only a complete extraction is moved into place. Member paths are checked (no absolute paths, no
``..``), and only regular files are written: links and devices from an archive are never created.

* :func:`extract_video_tarball`: a Kinetics tarball (``.tar.gz``) → ``split_dir/<class>/<clip>.mp4``,
  whether the tarball holds ``<class>/<clip>.mp4`` (the CVDF's Kinetics-700-2020 tarballs),
  ``<split>/<class>/<clip>.mp4``, or flat ``<clip>.mp4`` (classes then come from the annotations CSV).
* :func:`extract_zip_folder`: a zip holding one folder (tapnet's ``tapvid_davis.zip`` holds
  ``tapvid_davis/{tapvid_davis.pkl, README.md, SOURCES.md}``) → that folder at ``folder``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from gmrw.datatools.download.disk import InsufficientSpace, free_bytes, human_bytes
from gmrw.video import VIDEO_EXTENSIONS

CHUNK = 1 << 20
#: What tarfile/gzip raise for damaged or truncated data (not OSError: a full disk is not corruption).
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)


class CorruptArchiveError(Exception):
    """An archive could not be read to its end; nothing of it was kept."""


class ArchiveLayoutError(Exception):
    """An archive reads fine but does not hold what the dataset should (message says what)."""


@dataclasses.dataclass
class Extracted:
    files: int
    #: Members not written, with the reason (non-video files, clips without a label, links).
    left_out: list[str] = dataclasses.field(default_factory=list)


def member_parts(name: str) -> tuple[str, ...]:
    """An archive member's path as parts; refuses paths that would land outside the target."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveLayoutError(f"member {name!r} points outside the archive's folder")
    return tuple(p for p in path.parts if p not in ("", "."))


def clip_stem(youtube_id: str, start: int | str, end: int | str) -> str:
    """Kinetics' clip file stem: ``<youtube id>_<start:06>_<end:06>``."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def read_kinetics_labels(csv_path: Path) -> dict[str, str]:
    """The CVDF annotations CSV (``label,youtube_id,time_start,time_end,…``) → clip stem → label."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        needed = {"label", "youtube_id", "time_start", "time_end"}
        if not needed <= set(reader.fieldnames or ()):
            raise ArchiveLayoutError(f"{csv_path}: columns {reader.fieldnames}, expected {sorted(needed)}")
        return {clip_stem(r["youtube_id"], r["time_start"], r["time_end"]): r["label"] for r in reader}


def _replace_tree(staged: Path, folder: Path, scratch: Path) -> None:
    """Put ``staged`` at ``folder``; a previous ``folder`` is moved into ``scratch`` (then deleted)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        os.replace(folder, scratch / "previous")
    os.replace(staged, folder)


def extract_video_tarball(
    archive: Path,
    split_dir: Path,
    tmp_root: Path,
    labels: Callable[[], Mapping[str, str]] | None = None,
) -> Extracted:
    """Unpack a Kinetics tarball into ``split_dir/<class>/<clip>`` (see the module docstring).

    ``labels()`` (clip stem → class, :func:`read_kinetics_labels`; called only if a clip sits in no
    class folder) places such clips; clips it does not know are left out and listed in the result.
    """
    split = split_dir.name
    tmp_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}.", dir=tmp_root))
    try:
        staged: list[tuple[Path, Path]] = []
        left_out: list[str] = []
        unlabelled: list[str] = []  # video files in no class folder whose clip id the annotations lack
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    parts = member_parts(member.name)
                    if member.isdir() or not parts:
                        continue
                    suffix = PurePosixPath(parts[-1]).suffix.lower()
                    if not member.isfile() or suffix not in VIDEO_EXTENSIONS:
                        left_out.append(f"{member.name} (not a regular video file)")
                        continue
                    folders = [p for p in parts[:-1] if p != split]
                    if folders:
                        cls = folders[-1]
                    elif labels is None:
                        raise ArchiveLayoutError(
                            f"{archive.name}: {member.name} is in no class folder and there is no "
                            "annotations CSV to look its class up"
                        )
                    elif (cls := labels().get(PurePosixPath(parts[-1]).stem)) is None:
                        left_out.append(f"{member.name} (in no class folder and not in the annotations)")
                        unlabelled.append(member.name)
                        continue
                    # Staged under a counter: two classes may hold clips of the same name.
                    target = scratch / f"{len(staged):08d}{suffix}"
                    source = tar.extractfile(member)
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    staged.append((target, split_dir / cls / parts[-1]))
        except _ARCHIVE_ERRORS as exc:
            raise CorruptArchiveError(f"{archive.name}: {type(exc).__name__}: {exc}") from None
        if not staged:
            raise ArchiveLayoutError(
                nothing_placed(archive.name, unlabelled, len(left_out) - len(unlabelled))
            )
        for source, target in staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        return Extracted(len(staged), left_out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def nothing_placed(archive: str, unlabelled: list[str], others: int) -> str:
    """Why a Kinetics tarball gave no clip: what it held, and why none could be placed."""
    if unlabelled:
        other = f"; its {others} other member(s) are not video files" if others else ""
        return (
            f"{archive}: none of its {len(unlabelled)} video file(s) could be placed: they sit in no class "
            f"folder and their clip ids are not in the split's annotations CSV (e.g. {unlabelled[0]}){other}; "
            "is it the tarball of another split or release?"
        )
    if others:
        return f"{archive}: holds {others} member(s) and no video file (e.g. no .mp4)"
    return f"{archive}: holds no files"


def extract_zip_folder(archive: Path, folder: Path, tmp_root: Path, required: str) -> Extracted:
    """Unpack a zip into ``folder`` (replacing it), dropping the one top-level folder all members share.

    ``required`` must be among the files at the top of the result (e.g. ``tapvid_davis.pkl``). The
    unpacked size is read from the zip's directory and checked against the free space first.
    """
    tmp_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}.", dir=tmp_root))
    try:
        staged = scratch / "folder"
        count = 0
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                paths = [member_parts(i.filename) for i in infos]
                tops = {p[0] for p in paths}
                strip = 1 if len(tops) == 1 and all(len(p) > 1 for p in paths) else 0
                relative = [p[strip:] for p in paths]
                if (required,) not in relative:
                    raise ArchiveLayoutError(
                        f"{archive.name}: no {required} at the top of its folder "
                        f"(holds {sorted('/'.join(p) for p in relative)[:5]})"
                    )
                need, free = sum(i.file_size for i in infos), free_bytes(scratch)
                if need > free:
                    raise InsufficientSpace(
                        f"{archive.name} unpacks to {human_bytes(need)}; {human_bytes(free)} free at {scratch}"
                    )
                for info, rel in zip(infos, relative):
                    target = staged.joinpath(*rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    # zipfile checks each member's CRC when its end is read.
                    with zf.open(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    count += 1
        except _ARCHIVE_ERRORS as exc:
            raise CorruptArchiveError(f"{archive.name}: {type(exc).__name__}: {exc}") from None
        _replace_tree(staged, folder, scratch)
        return Extracted(count)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
