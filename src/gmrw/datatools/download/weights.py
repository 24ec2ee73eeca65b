"""``gmrw-data download gmrw_weights DIR``: the paper's released checkpoints, each loaded before it is kept.

The publisher serves one zip (:data:`gmrw.datatools.download.registry.WEIGHTS`), made on request, with no
published size or checksum. So the download is checked by what matters: every ``.pth`` in it must
load with our weights-only loader into the GMRW architecture (:func:`gmrw.models.load_model`).

1. The zip downloads to ``DIR/.download/<name>.zip`` through a ``.part`` file that a rerun continues
   with an HTTP Range request (:class:`~gmrw.datatools.download.http.Fetcher`: retries, atomic rename).
2. Each ``.pth`` member is unpacked into a scratch folder beside DIR (zipfile checks its CRC-32),
   loaded, and only then moved to ``DIR/<file>.pth`` (one rename: a reader never sees half a file).
   A member that is damaged or does not load is named and not kept; the others are.
3. When every file the publisher lists is in place, ``DIR/.download/<name>.done`` records what each
   one is (its training data and step, as the checkpoint itself records them, and its SHA-256); a
   rerun then downloads nothing. The zip is deleted unless ``--keep-archives`` (always when damaged).

``--mirror URL`` names the zip itself (any server that serves a copy of it), not a host replacing
the publisher's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

from gmrw.checkpoint import CheckpointError, load_model
from gmrw.checkpoint.read import read_checkpoint
from gmrw.datatools.download.archives import ArchiveLayoutError, CorruptArchiveError, member_parts
from gmrw.datatools.download.disk import free_bytes, human_bytes
from gmrw.datatools.download.http import DownloadError, Fetcher, Interrupted, PermanentHTTPError
from gmrw.datatools.download.plan import BOOKKEEPING
from gmrw.datatools.download.progress import Reporter
from gmrw.datatools.download.registry import WEIGHTS, WeightsSpec
from gmrw.datatools.download.runner import DownloadSetupError, Options

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")
CHUNK = 1 << 20
#: What the paper's training scripts store as ``args.dataset_type``, as a reader knows the data.
TRAINING_DATA = {"kubric": "Kubric MOVi-E", "kinetics": "Kinetics-700-2020"}


@dataclasses.dataclass(frozen=True)
class CheckpointReport:
    """One checkpoint of the zip: kept (``problem`` None) or not, and what it records."""

    name: str
    problem: str | None = None
    bytes: int = 0
    sha256: str = ""
    step: int | None = None
    dataset: str | None = None
    run: str | None = None
    parameters: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self, root: Path) -> str:
        if not self.ok:
            return f"NOT KEPT {self.name}: {self.problem}"
        data = TRAINING_DATA.get(self.dataset or "", self.dataset or "training data not recorded")
        run = f" (run {self.run})" if self.run else ""
        step = f"step {self.step}" if self.step is not None else "step not recorded"
        params = f"{self.parameters / 1e6:.2f} M parameters" if self.parameters else "?"
        return (
            f"{self.name}: {data}{run}, {step}; loads with gmrw.load_model ({params}); "
            f"{human_bytes(self.bytes)}, sha256 {self.sha256[:16]}… → {root / self.name}"
        )


@dataclasses.dataclass
class WeightsSummary:
    spec: WeightsSpec
    root: Path
    url: str
    size: int | None = None
    needed: int | None = None
    free: int = 0
    checkpoints: list[CheckpointReport] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    failure: str | None = None
    already_complete: bool = False
    dry_run: bool = False
    interrupted: bool = False
    transferred: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and not self.interrupted
            and not self.missing
            and all(c.ok for c in self.checkpoints)
        )


def archive_path(root: Path, spec: WeightsSpec) -> Path:
    return root / BOOKKEEPING / f"{spec.name}.zip"


def marker_path(root: Path, spec: WeightsSpec) -> Path:
    return root / BOOKKEEPING / f"{spec.name}.done"


# ------------------------------------------------------------------------------------ checking


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _attribute(args: Any, key: str) -> Any:
    return args.get(key) if isinstance(args, dict) else getattr(args, key, None)


def inspect_checkpoint(path: Path, name: str | None = None) -> CheckpointReport:
    """Load ``path`` as gmrw does (weights-only, strict architecture) and read what it records:
    the paper's ``global_step`` and ``args.dataset_type`` / ``args.exp_name``."""
    name = name or path.name
    try:
        model = load_model(path)
        stored = read_checkpoint(path)
    except (CheckpointError, TypeError, RuntimeError) as exc:  # TypeError: kwargs GMRW does not take
        return CheckpointReport(name, f"does not load with gmrw.load_model: {exc}")
    record = stored if isinstance(stored, dict) else {}
    args = record.get("args")
    step = record.get("global_step")
    return CheckpointReport(
        name,
        bytes=path.stat().st_size,
        sha256=_sha256(path),
        step=int(step) if isinstance(step, int) else None,
        dataset=_attribute(args, "dataset_type"),
        run=_attribute(args, "exp_name"),
        parameters=sum(p.numel() for p in model.parameters()),
    )


def unpack_checkpoints(archive: Path, root: Path, tmp_root: Path) -> list[CheckpointReport]:
    """Every checkpoint member of ``archive``, checked (:func:`inspect_checkpoint`); those that load
    are moved to ``root/<file name>``. Raises :class:`CorruptArchiveError` when the zip cannot be
    read at all, :class:`ArchiveLayoutError` when it holds no checkpoint."""
    tmp_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}.", dir=tmp_root))
    reports: list[CheckpointReport] = []
    try:
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise CorruptArchiveError(f"{archive.name}: {type(exc).__name__}: {exc}") from None
        with zf:
            members = [
                info
                for info in zf.infolist()
                if not info.is_dir() and info.filename.lower().endswith(CHECKPOINT_SUFFIXES)
            ]
            names = [member_parts(info.filename)[-1] for info in members]
            if not members:
                listed = sorted(i.filename for i in zf.infolist())[:5]
                raise ArchiveLayoutError(f"{archive.name}: no checkpoint (.pth) in it (holds {listed})")
            if len(set(names)) != len(names):
                raise ArchiveLayoutError(f"{archive.name}: two checkpoints share a file name ({names})")
            need, free = sum(i.file_size for i in members), free_bytes(scratch)
            if need > free:
                raise ArchiveLayoutError(
                    f"{archive.name} unpacks to {human_bytes(need)}; {human_bytes(free)} free at {scratch}"
                )
            for info, name in zip(members, names):
                staged = scratch / name
                try:
                    # zipfile checks the member's CRC-32 when its end is read.
                    with zf.open(info) as source, open(staged, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    reports.append(CheckpointReport(name, f"damaged in the zip ({exc})"))
                    continue
                report = inspect_checkpoint(staged, name)
                if report.ok:
                    os.replace(staged, root / name)
                reports.append(report)
        return reports
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------ the run


def _recorded(root: Path, spec: WeightsSpec) -> list[CheckpointReport] | None:
    """The reports of a finished earlier run, if its marker and every file it names are still there."""
    marker = marker_path(root, spec)
    try:
        entries = json.loads(marker.read_text())["checkpoints"]
        reports = [CheckpointReport(**entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for report in reports:
        path = root / report.name
        if not path.is_file() or path.stat().st_size != report.bytes:
            return None
    return reports


def _write_marker(root: Path, spec: WeightsSpec, url: str, reports: list[CheckpointReport]) -> None:
    marker = marker_path(root, spec)
    part = marker.with_name(marker.name + ".part")
    body = {"url": url, "checkpoints": [dataclasses.asdict(r) for r in reports]}
    part.write_text(json.dumps(body, indent=1) + "\n")
    part.replace(marker)


def download_weights(
    name: str, root: str | Path, options: Options | None = None, reporter: Reporter | None = None
) -> WeightsSummary:
    """Fetch and check the checkpoints of ``WEIGHTS[name]`` into ``root`` (see the module docstring).

    Raises :class:`DownloadSetupError` when it cannot start (too little space); every other failure
    is in the returned summary (``summary.ok`` False).
    """
    options = options or Options()
    reporter = reporter or Reporter()
    spec = WEIGHTS[name]
    root = Path(root).absolute()
    url = options.mirror or spec.url
    summary = WeightsSummary(spec, root, url, dry_run=options.dry_run)
    started = time.monotonic()
    recorded = _recorded(root, spec)
    if recorded is not None:
        summary.checkpoints, summary.already_complete = recorded, True
        return summary

    stop = threading.Event()
    fetcher = Fetcher(options.policy, None, reporter.add_bytes, reporter.note, stop)
    archive = archive_path(root, spec)
    part = archive.with_name(archive.name + ".part")
    if archive.is_file():
        summary.size, on_disk = archive.stat().st_size, archive.stat().st_size
    else:
        try:
            summary.size = fetcher.head_size(url)
        except PermanentHTTPError as exc:
            summary.failure = str(exc)
            return summary
        except DownloadError:
            summary.size = None  # the GET will say more
        on_disk = part.stat().st_size if part.is_file() else 0
    summary.free = free_bytes(root)
    if summary.size is not None:
        # The zip, and its checkpoints unpacked beside it (stored weights barely compress).
        summary.needed = max(2 * summary.size - on_disk, 0)
    if options.dry_run:
        return summary
    if summary.needed is not None and summary.needed > summary.free:
        raise DownloadSetupError(
            f"not enough space: {spec.name} needs {human_bytes(summary.needed)} more at {root}, "
            f"the file system has {human_bytes(summary.free)} free"
        )

    reporter.start(1, summary.size, on_disk)
    try:
        if not archive.is_file():
            summary.transferred = fetcher.download(url, archive, part, summary.size)
        reporter.file_finished(archive.name, True, human_bytes(archive.stat().st_size))
        root.mkdir(parents=True, exist_ok=True)
        summary.checkpoints = unpack_checkpoints(archive, root, root / BOOKKEEPING / "tmp")
    except (Interrupted, KeyboardInterrupt):
        summary.interrupted = True
    except CorruptArchiveError as exc:
        archive.unlink(missing_ok=True)
        summary.failure = f"corrupt zip, nothing kept: {exc}; a rerun downloads it again"
    except (DownloadError, ArchiveLayoutError) as exc:
        summary.failure = str(exc)
    except OSError as exc:  # a full disk, a permission problem
        summary.failure = f"{type(exc).__name__}: {exc}"
    finally:
        reporter.close()
        summary.seconds = time.monotonic() - started
    if summary.interrupted:
        return summary
    if summary.failure is None:
        found = {c.name for c in summary.checkpoints}
        summary.missing = [f for f in spec.files if f not in found]
    if summary.ok:
        _write_marker(root, spec, url, summary.checkpoints)
    damaged = any(c.problem and c.problem.startswith("damaged") for c in summary.checkpoints)
    if damaged or not options.keep_archives:
        archive.unlink(missing_ok=True)
    return summary


# ------------------------------------------------------------------------------------ what it prints


def plan_lines(summary: WeightsSummary) -> list[str]:
    """``--dry-run``: the one GET, where the checkpoints would go, and the space it needs."""
    spec, root = summary.spec, summary.root
    if summary.already_complete:
        return [f"{spec.title} → {root}", "nothing to fetch: every checkpoint is already in place"]
    lines = [f"{spec.title} → {root}"]
    if summary.failure:
        return [*lines, f"MISSING {summary.failure}"]
    lines.append(
        f"GET {summary.url}  {human_bytes(summary.size)}  → {archive_path(root, spec)}, then each "
        f"checkpoint in it is loaded with gmrw.load_model and kept as {root}/<file>.pth"
    )
    lines += [f"expect {name}: {what}" for name, what in spec.files.items()]
    if summary.needed is None:
        lines.append(f"disk: the zip's size is unknown (no Content-Length); {human_bytes(summary.free)} free")
    else:
        lines.append(
            f"disk: needs {human_bytes(summary.needed)} more at {root} (the zip and the checkpoints "
            f"unpacked from it), {human_bytes(summary.free)} free"
        )
        if summary.needed > summary.free:
            lines.append("disk: NOT ENOUGH SPACE: the download would refuse to start")
    return lines


def summary_lines(summary: WeightsSummary) -> list[str]:
    """The end of a run: one line per checkpoint (what it was trained on, its step), failures by name."""
    spec, root = summary.spec, summary.root
    kept = [c for c in summary.checkpoints if c.ok]
    if summary.already_complete:
        lines = [f"{spec.name}: already complete in {root} (nothing downloaded)"]
    else:
        lines = [
            f"{spec.name}: {len(kept)} checkpoint(s) kept, "
            f"{len(summary.checkpoints) - len(kept) + len(summary.missing)} missing or not kept; "
            f"{human_bytes(summary.transferred)} downloaded in {summary.seconds:.0f}s"
        ]
    lines += [c.line(root) for c in summary.checkpoints]
    lines += [f"MISSING {name}: not in the zip ({spec.files[name]})" for name in summary.missing]
    if summary.interrupted:
        lines.append("interrupted: the partial zip is kept; run the same command again to resume")
    if summary.failure:
        lines.append(f"FAILED {archive_path(root, spec).name}: {summary.failure}")
    if summary.ok:
        if spec.config:
            lines.append(f"use: {spec.config.replace('DIR', str(root))}")
    elif not summary.interrupted:
        lines.append("run the same command again to retry; checkpoints already kept stay")
    return lines
