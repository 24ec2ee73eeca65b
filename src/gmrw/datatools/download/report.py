"""The text a download prints before (``--dry-run``) and after a run."""

from __future__ import annotations

from gmrw.datatools.download.disk import human_bytes
from gmrw.datatools.download.http import mirror_url
from gmrw.datatools.download.runner import Summary


def _space_lines(summary: Summary) -> list[str]:
    space = summary.space
    lines = [
        f"disk: needs {human_bytes(space.needed)} more at {space.path} "
        f"(archives counted once more while they unpack{'; kept afterwards' if summary.keep_archives else ''}), "
        f"{human_bytes(space.free)} free"
    ]
    if space.unknown_sizes:
        lines.append(f"disk: {space.unknown_sizes} file(s) of unknown size are not counted")
    if not space.enough:
        lines.append("disk: NOT ENOUGH SPACE: the download would refuse to start")
    return lines


def plan_lines(summary: Summary, mirror: str | None = None) -> list[str]:
    """What a dry run would fetch: one line per file (URL, size, destination), then the totals."""
    lines = [f"{summary.spec.title} → {summary.root}"]
    for item in summary.pending:
        where = item.dest if item.unpack is None else f"unpack into {_unpack_target(item)}"
        lines.append(f"GET {mirror_url(item.url, mirror)}  {human_bytes(item.size)}  → {where}")
    for outcome in summary.missing:
        lines.append(f"MISSING {outcome.detail}")
    for outcome in summary.unreachable:
        lines.append(f"UNREACHABLE {mirror_url(outcome.item.url, mirror)}: {outcome.detail}")
    known = sum(i.size for i in summary.pending if i.size is not None)
    lines.append(
        f"would fetch {len(summary.pending)} file(s), {human_bytes(known)}; "
        f"{summary.skipped} already complete; {len(summary.missing)} refused by the server"
        + (f"; {len(summary.unreachable)} could not be looked up" if summary.unreachable else "")
    )
    return lines + _space_lines(summary)


def dry_run_failure(summary: Summary) -> str | None:
    """One line saying why a dry run could not say what it would fetch; None when it could."""
    if summary.missing:
        first = summary.missing[0]
        return (
            f"{len(summary.missing)} file(s) refused by the server (first: {first.item.name}: {first.detail}); "
            "the publisher may have moved them, or --mirror lacks them"
        )
    if summary.unreachable:
        first = summary.unreachable[0]
        detail = first.detail if len(first.detail) <= 160 else first.detail[:159] + "…"  # UNREACHABLE: all
        return (
            f"{len(summary.unreachable)} file(s) could not be looked up (first: {first.item.name}: "
            f"{detail}); check the network or --mirror and run it again"
        )
    return None


def _unpack_target(item) -> str:
    unpack = item.unpack
    return str(getattr(unpack, "split_dir", None) or getattr(unpack, "folder", ""))


def summary_lines(summary: Summary) -> list[str]:
    """The end of a run: counts, failures by name, and what to run next."""
    spec = summary.spec
    done = [o for o in summary.outcomes if o.ok]
    lines = [
        f"{spec.name}: {len(done)} file(s) done, {len(summary.failed)} failed, {summary.skipped} already "
        f"complete; {human_bytes(summary.transferred)} downloaded in {summary.seconds:.0f}s"
    ]
    if summary.interrupted:
        lines.append("interrupted: partial files are kept; run the same command again to resume")
    for outcome in summary.failed:
        lines.append(f"FAILED {outcome.item.name}: {outcome.detail}")
    if summary.ok:
        lines.append(f"layout: {spec.layout.replace('DIR', str(summary.root))}")
        if summary.splits != spec.splits and spec.checks:
            lines.append(f"check: `gmrw-data check` wants every split ({', '.join(spec.splits)})")
        else:
            for fmt, rel in spec.checks:
                path = summary.root / rel if rel else summary.root
                lines.append(f"check: gmrw-data check {path} --format {fmt}")
        if spec.config:
            lines.append(f"use: {spec.config.replace('DIR', str(summary.root))}")
    elif summary.failed:
        lines.append("run the same command again to retry what failed; complete files are skipped")
    if spec.note:
        lines.append(f"note: {spec.note.replace('DIR', str(summary.root))}")
    return lines
