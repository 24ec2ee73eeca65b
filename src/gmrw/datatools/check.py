"""Validate a dataset folder before a run: counts, resolutions, frame counts, bad files.

Used by ``gmrw-data check DIR --format …``; each checker returns a :class:`CheckReport`.
A report is *usable* when the folder can feed a run (some good items, right layout); bad
files alone do not make it unusable, since the loaders skip them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from gmrw.choices import DATASET_FORMATS, check_choice


@dataclasses.dataclass
class SplitStats:
    name: str
    items: int = 0
    checked: int = 0
    resolutions: Counter = dataclasses.field(default_factory=Counter)
    frame_counts: list[int] = dataclasses.field(default_factory=list)
    extra: str = ""

    def frames_summary(self) -> str:
        if not self.frame_counts:
            return "-"
        a = np.asarray(self.frame_counts)
        return f"{a.min()} / {int(np.median(a))} / {a.max()}"

    def resolution_summary(self) -> str:
        if not self.resolutions:
            return "-"
        parts = [f"{h}x{w} ({n})" for (h, w), n in self.resolutions.most_common(3)]
        more = len(self.resolutions) - 3
        return ", ".join(parts) + (f", +{more} more" if more > 0 else "")


@dataclasses.dataclass
class CheckReport:
    format: str
    path: str
    splits: list[SplitStats] = dataclasses.field(default_factory=list)
    bad_files: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    errors: list[str] = dataclasses.field(default_factory=list)  # layout problems: unusable

    @property
    def usable(self) -> bool:
        good = sum(s.checked for s in self.splits) - len(self.bad_files)
        return not self.errors and good > 0


def _limited(items: list, limit: int | None) -> list:
    return items if limit is None else items[:limit]


def check_kinetics(path: str, limit: int | None = None, quick: bool = False) -> CheckReport:
    """Every video of ``train/`` and ``val/`` is opened with decord; unless ``quick``, its first
    and last frames are decoded too (a truncated file often opens but cannot decode its end)."""
    from gmrw.data.readers.kinetics import list_videos
    from gmrw.video import BadVideoError, import_decord, read_frames

    report = CheckReport("kinetics", path)
    for split in ("train", "val"):
        if not (Path(path) / split).is_dir():
            continue
        try:
            videos = list_videos(path, split)
        except FileNotFoundError as exc:
            report.errors.append(str(exc))
            continue
        stats = SplitStats(split, items=len(videos))
        stats.extra = f"{len({v.parent.name for v in videos})} classes"
        for video in _limited(videos, limit):
            stats.checked += 1
            try:
                decord = import_decord()

                try:
                    reader = decord.VideoReader(str(video), num_threads=1)
                except Exception as exc:  # DECORDError
                    raise BadVideoError(f"cannot open: {exc}") from exc
                n = len(reader)
                if n == 0:
                    raise BadVideoError("zero frames")
                if not quick:
                    frames, _ = read_frames(str(video), indices=[0, n - 1])
                    h, w = frames.shape[1:3]
                else:
                    h, w = reader[0].shape[:2]
                stats.frame_counts.append(n)
                stats.resolutions[(h, w)] += 1
            except BadVideoError as exc:
                report.bad_files.append((str(video), str(exc).removeprefix(f"{video}: ")))
        report.splits.append(stats)
    if not (Path(path) / "train").is_dir():
        from gmrw.data.readers.kinetics import KINETICS_LAYOUT

        report.errors.append(f"no train/ folder in {path}: {KINETICS_LAYOUT.format(split='train')}")
    return report


def check_kubric(path: str, limit: int | None = None, quick: bool = False) -> CheckReport:
    """Indexes every tfrecord shard (catches truncated shards) and decodes up to ``limit``
    examples per split (default 2) to report resolution, frame count and flow ranges."""
    from gmrw.data.readers.movi_e import MoviEReader, find_version_dir, index_tfrecord

    report = CheckReport("kubric", path)
    try:
        version_dir = find_version_dir(path)
    except FileNotFoundError as exc:
        report.errors.append(str(exc))
        return report
    for split in ("train", "validation"):
        files = sorted(version_dir.glob(f"movi_e-{split}.tfrecord-*-of-*"))
        if not files:
            report.errors.append(f"no movi_e-{split}.tfrecord-* files in {version_dir}")
            continue
        stats = SplitStats(split)
        good_files = []
        for f in files:
            try:
                stats.items += len(index_tfrecord(f))
                good_files.append(f)
            except ValueError as exc:
                report.bad_files.append((str(f), str(exc).removeprefix(f"{f}: ")))
        if not good_files:
            report.splits.append(stats)
            continue
        reader = MoviEReader(version_dir, split, files=good_files)
        n_decode = 2 if limit is None else limit
        ranges = []
        for i in range(min(n_decode, len(reader))):
            stats.checked += 1
            try:
                ex = reader.example(i, ("video", "metadata"))
                t, h, w = ex["video"].shape[:3]
                stats.frame_counts.append(int(t))
                stats.resolutions[(int(h), int(w))] += 1
                ranges.append(np.asarray(ex["metadata"]["forward_flow_range"]))
            except Exception as exc:  # a corrupt record
                report.bad_files.append((f"{split}[{i}]", f"{type(exc).__name__}: {exc}"))
        if ranges:
            stats.extra = "fwd flow range " + ", ".join(f"[{r[0]:.1f}, {r[1]:.1f}]" for r in ranges[:2])
        report.splits.append(stats)
    return report


def check_tapvid(path: str, format: str, limit: int | None = None, quick: bool = False) -> CheckReport:
    """Loads the benchmark file(s) and decodes every example (or the first ``limit``).

    ``tapvid_kubric`` (tracks sampled from movi_e's validation split) samples the tracks of the
    first ``limit`` videos (default 2; ~1 s each) and reports how many are occluded.
    """
    from gmrw.data.readers.tapvid import decode_frames
    from gmrw.data.tapvid import TapVidDataset

    fmt = format
    if fmt == "tapvid_kubric" and limit is None:
        limit = 2
    report = CheckReport(format, path)
    p = Path(path)
    if fmt == "tapvid_kubric_tsv" and p.is_dir():
        p = p / "validation_data.tsv"
    try:
        ds = TapVidDataset(fmt, p, query_mode="first", resolution=None)
    except (ValueError, OSError) as exc:  # the reader's own one-line messages
        report.errors.append(str(exc))
        return report
    except Exception as exc:  # anything else a broken file makes a reader raise
        report.errors.append(f"{type(exc).__name__}: {exc}")
        return report
    stats = SplitStats("validation" if fmt == "tapvid_kubric" else "all", items=len(ds))
    points, occluded = [], []
    for i in range(len(ds)) if limit is None else range(min(limit, len(ds))):
        stats.checked += 1
        name = ds.names[i]
        try:
            if fmt == "tapvid_kubric_tsv":
                row = ds.tsv_row(i)
                video, n_points = row["video"], row["query_points"].shape[0]
            elif fmt == "tapvid_kubric":
                example = ds[i]
                video, n_points = example["video"].numpy(), int(example["query_points"].shape[0])
                occluded.append(float(example["occluded"].float().mean()))
            else:
                rec = ds.raw(i)
                video = decode_frames(rec["video"]) if not quick else np.asarray(rec["video"][:1])
                pts, occ = np.asarray(rec["points"]), np.asarray(rec["occluded"])
                if pts.ndim != 3 or pts.shape[-1] != 2 or occ.shape != pts.shape[:2]:
                    raise ValueError(
                        f"points {pts.shape} / occluded {occ.shape} do not match (N, T, 2) / (N, T)"
                    )
                if not quick and pts.shape[1] != len(video):
                    raise ValueError(f"{len(video)} frames but tracks of length {pts.shape[1]}")
                n_points = pts.shape[0]
            if quick and fmt not in ("tapvid_kubric_tsv", "tapvid_kubric"):
                stats.frame_counts.append(int(np.asarray(rec["points"]).shape[1]))
            else:
                stats.frame_counts.append(int(len(video)))
            if getattr(video, "ndim", 0) == 4:
                stats.resolutions[(int(video.shape[1]), int(video.shape[2]))] += 1
            points.append(n_points)
        except Exception as exc:
            report.bad_files.append((name, f"{type(exc).__name__}: {exc}"))
    if points:
        stats.extra = f"points/video {min(points)}–{max(points)}"
    if occluded:
        stats.extra += f", occluded {min(occluded):.0%}–{max(occluded):.0%}"
    report.splits.append(stats)
    return report


def check_dataset(path: str, format: str, limit: int | None = None, quick: bool = False) -> CheckReport:
    check_choice(format, DATASET_FORMATS, "dataset format")
    if not Path(path).exists():
        report = CheckReport(format, path)
        report.errors.append(f"{path} does not exist")
        return report
    if format == "kinetics":
        return check_kinetics(path, limit, quick)
    if format == "kubric":
        return check_kubric(path, limit, quick)
    return check_tapvid(path, format, limit, quick)


def print_report(report: CheckReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{report.format}: {report.path}")
    for col in ("split", "items", "checked", "resolution (HxW)", "frames min/median/max", "notes"):
        table.add_column(col)
    for s in report.splits:
        table.add_row(
            s.name, str(s.items), str(s.checked), s.resolution_summary(), s.frames_summary(), s.extra
        )
    console.print(table)
    if report.bad_files:
        # Plain lines, not a table: full paths must stay greppable whatever the terminal width.
        console.print(f"[yellow]{len(report.bad_files)} bad file(s):[/yellow]")
        for f, why in report.bad_files:
            console.print(f"  BAD {f}: {why}", soft_wrap=True, markup=False, highlight=False)
    else:
        console.print("bad files: 0")
    for err in report.errors:
        console.print(f"[red]error:[/red] {err}")
    console.print("[green]usable[/green]" if report.usable else "[red]NOT usable[/red]")
