"""Run a download: plan, skip what is complete, size, check the free space, fetch and unpack in parallel.

Each worker takes one item from download to unpacked (a Kinetics tarball is unpacked as soon as it is
complete, while the others keep downloading). A failed item (404, corrupt archive, retries spent) is
reported by name and the rest carry on; :class:`Summary` lists everything at the end.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import threading
import time
from pathlib import Path

from gmrw.datatools.download.archives import ArchiveLayoutError, CorruptArchiveError
from gmrw.datatools.download.disk import InsufficientSpace, free_bytes, human_bytes
from gmrw.datatools.download.http import DownloadError, Fetcher, Interrupted, PermanentHTTPError, RetryPolicy
from gmrw.datatools.download.plan import BOOKKEEPING, PLANNERS, Item, PlanContext, PlanError, cache_path
from gmrw.datatools.download.progress import Reporter
from gmrw.datatools.download.registry import DATASETS, NOT_DOWNLOADABLE, DatasetSpec

#: At most this many "left out of <archive>" lines per archive; the rest are counted.
MAX_LEFT_OUT_LINES = 10


class DownloadSetupError(Exception):
    """The download cannot start (unknown dataset or split, unreadable index, too little space)."""


@dataclasses.dataclass
class Options:
    workers: int = 4
    keep_archives: bool = False
    dry_run: bool = False
    mirror: str | None = None
    policy: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)


@dataclasses.dataclass
class Outcome:
    item: Item
    ok: bool
    detail: str = ""
    transferred: int = 0


@dataclasses.dataclass
class Space:
    """Bytes the pending items still need on ``path``'s file system, and what it has free."""

    needed: int
    free: int
    path: Path
    unknown_sizes: int

    @property
    def enough(self) -> bool:
        return self.needed <= self.free


@dataclasses.dataclass
class Summary:
    spec: DatasetSpec
    root: Path
    splits: tuple[str, ...]
    pending: list[Item]
    skipped: int
    space: Space
    missing: list[Outcome] = dataclasses.field(default_factory=list)  # refused by HEAD (404, 403)
    #: HEAD failed otherwise (no connection, retries spent). A run still tries these (its GET says
    #: more); a dry run cannot say what it would fetch, so there they count as failed.
    unreachable: list[Outcome] = dataclasses.field(default_factory=list)
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    dry_run: bool = False
    keep_archives: bool = False
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        unreachable = self.unreachable if self.dry_run else []
        return self.missing + unreachable + [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    @property
    def transferred(self) -> int:
        return sum(o.transferred for o in self.outcomes)


def resolve(name: str, splits: list[str] | None) -> tuple[DatasetSpec, tuple[str, ...]]:
    """The dataset's spec and the splits to fetch (all of them by default); one-line errors."""
    if name not in DATASETS:
        why = f" ({NOT_DOWNLOADABLE[name]})" if name in NOT_DOWNLOADABLE else ""
        raise DownloadSetupError(f"cannot download {name!r}{why}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    if not splits:
        return spec, spec.splits
    if not spec.splits:
        raise DownloadSetupError(f"{name} has no splits; drop --split")
    unknown = [s for s in splits if s not in spec.splits]
    if unknown:
        raise DownloadSetupError(f"{name} has no split {unknown[0]!r}; choose from {list(spec.splits)}")
    return spec, tuple(dict.fromkeys(splits))


def space_needed(pending: list[Item], workers: int, keep_archives: bool, root: Path) -> Space:
    """What the pending items add to the disk at their peak.

    Unpacked archives are counted at the archive's size (mp4 clips do not compress; a zip's exact
    unpacked size is checked again against the free space before it is unpacked). Without
    ``keep_archives`` an archive is deleted once unpacked, so only the archives of ``workers``
    transfers coexist with their unpacked copies. Bytes already on disk (partial files) are subtracted.
    """
    sizes = [(i, i.size) for i in pending if i.size is not None]
    archives = sorted((s for i, s in sizes if i.unpack is not None), reverse=True)
    final = sum(s for _, s in sizes)
    in_flight = sum(archives) if keep_archives else sum(archives[: max(workers, 1)])
    on_disk = sum(i.partial_bytes() for i in pending)
    return Space(
        needed=max(final + in_flight - on_disk, 0),
        free=free_bytes(root),
        path=root,
        unknown_sizes=len(pending) - len(sizes),
    )


def _plan(
    spec: DatasetSpec, root: Path, splits: tuple[str, ...], fetcher: Fetcher, dry_run: bool
) -> list[Item]:
    def read_index(url: str) -> bytes:
        cached = cache_path(root, url)
        if cached.is_file():
            return cached.read_bytes()
        try:
            data = fetcher.get_bytes(url)
        except DownloadError as exc:
            raise PlanError(f"cannot read the publisher's index: {exc}") from None
        if not dry_run:
            cached.parent.mkdir(parents=True, exist_ok=True)
            part = cached.with_name(cached.name + ".part")
            part.write_bytes(data)
            part.replace(cached)
        return data

    try:
        return PLANNERS[spec.kind](spec, PlanContext(root, splits, read_index))
    except PlanError as exc:
        raise DownloadSetupError(str(exc)) from None


def _size_items(items: list[Item], fetcher: Fetcher, workers: int) -> tuple[list[Outcome], list[Outcome]]:
    """Fill in ``size`` with HEAD requests: (items the server refuses (404, 403), items whose
    lookup failed otherwise)."""
    refused: list[Outcome] = []
    unreachable: list[Outcome] = []

    def head(item: Item) -> None:
        try:
            item.size = fetcher.head_size(item.url)
        except PermanentHTTPError as exc:
            refused.append(Outcome(item, False, str(exc)))
        except DownloadError as exc:
            item.size = None  # a run's GET will say more
            unreachable.append(Outcome(item, False, f"size lookup failed: {exc}"))

    for item in items:
        if item.size is None and item.unpack is not None and item.dest.is_file():
            item.size = item.dest.stat().st_size  # downloaded by an earlier run, not yet unpacked
    unknown = [i for i in items if i.size is None]
    with futures.ThreadPoolExecutor(max_workers=min(16, max(2 * workers, 4))) as pool:
        list(pool.map(head, unknown))
    return refused, unreachable


class _Worker:
    """Takes one item from download to unpacked; turns every failure into an :class:`Outcome`."""

    def __init__(self, fetcher: Fetcher, reporter: Reporter, root: Path, keep_archives: bool):
        self.fetcher, self.reporter = fetcher, reporter
        self.tmp_root = root / BOOKKEEPING / "tmp"
        self.keep_archives = keep_archives

    def __call__(self, item: Item) -> Outcome:
        outcome = self._run(item)
        self.reporter.file_finished(item.name, outcome.ok, outcome.detail)
        return outcome

    def _run(self, item: Item) -> Outcome:
        transferred = 0
        try:
            if not item.dest.is_file():
                transferred = self.fetcher.download(item.url, item.dest, item.part, item.size)
            size = item.dest.stat().st_size
            if item.unpack is None:
                return Outcome(item, True, human_bytes(size), transferred)
            result = item.unpack(item.dest, self.tmp_root)
        except Interrupted:
            return Outcome(item, False, "interrupted; the partial file is kept for the next run", transferred)
        except CorruptArchiveError as exc:
            item.dest.unlink(missing_ok=True)
            return Outcome(
                item, False, f"corrupt archive, nothing kept: {exc}; a rerun downloads it again", transferred
            )
        except (DownloadError, ArchiveLayoutError, InsufficientSpace) as exc:
            return Outcome(item, False, str(exc), transferred)
        except OSError as exc:  # a full disk, a permission problem
            return Outcome(item, False, f"{type(exc).__name__}: {exc}", transferred)
        for line in result.left_out[:MAX_LEFT_OUT_LINES]:
            self.reporter.note(f"left out of {item.name}: {line}")
        if len(result.left_out) > MAX_LEFT_OUT_LINES:
            self.reporter.note(
                f"left out of {item.name}: … and {len(result.left_out) - MAX_LEFT_OUT_LINES} more"
            )
        marker = {"url": item.url, "bytes": size, "files": result.files, "left_out": len(result.left_out)}
        item.marker.write_text(json.dumps(marker) + "\n")
        if not self.keep_archives:
            item.dest.unlink()
        detail = f"{human_bytes(size)}, {result.files} files unpacked"
        if result.left_out:
            detail += f", {len(result.left_out)} left out"
        return Outcome(item, True, detail, transferred)


def download(
    name: str,
    root: str | Path,
    splits: list[str] | None = None,
    options: Options | None = None,
    reporter: Reporter | None = None,
) -> Summary:
    """Download dataset ``name`` into ``root`` (see :mod:`gmrw.datatools.download`).

    Raises :class:`DownloadSetupError` when it cannot start; otherwise returns a :class:`Summary`
    (``summary.ok`` is False when any file failed or the run was interrupted).
    """
    options = options or Options()
    reporter = reporter or Reporter()
    spec, splits = resolve(name, splits)
    root = Path(root).absolute()
    stop = threading.Event()
    fetcher = Fetcher(options.policy, options.mirror, reporter.add_bytes, reporter.note, stop)
    started = time.monotonic()

    items = _plan(spec, root, splits, fetcher, options.dry_run)
    pending = [i for i in items if not i.complete()]
    missing, unreachable = _size_items(pending, fetcher, options.workers)
    refused = {id(o.item) for o in missing}
    pending = [i for i in pending if id(i) not in refused]
    space = space_needed(pending, options.workers, options.keep_archives, root)
    summary = Summary(spec, root, splits, pending, len(items) - len(pending) - len(missing), space, missing)
    summary.dry_run, summary.keep_archives = options.dry_run, options.keep_archives
    summary.unreachable = unreachable
    if options.dry_run or not (pending or missing):
        return summary
    if not space.enough:
        raise DownloadSetupError(
            f"not enough space: {spec.name} needs {human_bytes(space.needed)} more at {root}, "
            f"the file system has {human_bytes(space.free)} free"
        )

    sizes = [i.size for i in pending]
    total = None if None in sizes else sum(sizes)
    reporter.start(len(pending) + len(missing), total, sum(i.partial_bytes() for i in pending))
    for outcome in missing:
        reporter.file_finished(outcome.item.name, False, outcome.detail)
    worker = _Worker(fetcher, reporter, root, options.keep_archives)
    pool = futures.ThreadPoolExecutor(max_workers=max(options.workers, 1))
    try:
        # Metadata first (the annotations a flat tarball needs), then everything else.
        for stage in ([i for i in pending if i.first], [i for i in pending if not i.first]):
            jobs = [pool.submit(worker, item) for item in stage]
            for job in futures.as_completed(jobs):
                summary.outcomes.append(job.result())
    except KeyboardInterrupt:
        stop.set()
        summary.interrupted = True
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        pool.shutdown(wait=True)
        reporter.close()
        summary.seconds = time.monotonic() - started
    return summary
