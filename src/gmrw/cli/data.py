"""``gmrw-data``: dataset utilities.

    gmrw-data check DIR --format FORMAT [--limit N] [--quick] [--strict]
    gmrw-data tiny DIR --format FORMAT
    gmrw-data download NAME DIR [--split S]... [--workers N] [--keep-archives] [--dry-run] [--mirror URL]
    gmrw-data download gmrw_weights DIR [--mirror ZIP_URL] [--keep-archives] [--dry-run]
    gmrw-data photos FILE.pkl [--videos N] [--frames T] [--seed S]

FORMAT is kinetics, kubric, tapvid_davis, tapvid_rgb_stacking, tapvid_kinetics, tapvid_kubric (tracks
sampled from movi_e's validation split: DIR is the TFDS data_dir) or tapvid_kubric_tsv (the
reference's validation_data.tsv).

``check`` prints counts, resolutions, frame counts and bad files; it exits 1 when the folder is
unusable (missing, wrong layout, nothing readable) and, with ``--strict``, also when any bad file
was found. ``tiny`` writes a tiny dataset in the real format (for smoke runs). ``download`` fetches
a dataset from its publisher into the layout the readers take (:mod:`gmrw.datatools.download`); it exits 1
when any file failed, 2 when it could not start, 130 when interrupted; for ``gmrw_weights`` (the
paper's checkpoints, :mod:`gmrw.datatools.download.weights`) it exits 1 when any checkpoint is missing
or does not load with ``gmrw.load_model``. ``photos`` writes the real-photo tracking benchmark
(:mod:`gmrw.data.photo_videos`) as a ``tapvid_davis`` pickle, for
``gmrw-eval data=tapvid_davis data.path=FILE.pkl``.
"""

from __future__ import annotations

import argparse
import sys

from gmrw.choices import DATASET_FORMATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmrw-data", description="gmrw dataset utilities")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a dataset folder or file")
    check.add_argument(
        "path",
        help="dataset root (kinetics; kubric and tapvid_kubric: the TFDS data_dir), or a pickle / shard folder / tsv",
    )
    check.add_argument("--format", required=True, choices=DATASET_FORMATS)
    check.add_argument("--limit", type=int, default=None, help="check at most N items per split")
    check.add_argument("--quick", action="store_true", help="open files only; do not decode frames")
    check.add_argument("--strict", action="store_true", help="exit 1 when any bad file is found")
    tiny = sub.add_parser("tiny", help="write a tiny dataset in the real format")
    tiny.add_argument("path")
    tiny.add_argument("--format", required=True, choices=DATASET_FORMATS)
    _add_download(sub)
    photos = sub.add_parser("photos", help="write the real-photo tracking benchmark as a tapvid_davis pickle")
    photos.add_argument("path", help="output .pkl file")
    photos.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    photos.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    photos.add_argument("--seed", type=int, default=0, help="which benchmark draw (default 0)")
    return parser


def _add_download(sub) -> None:
    from gmrw.datatools.download.registry import DATASETS, NOT_DOWNLOADABLE, WEIGHTS

    names = "; ".join(f"{n}: {s.title}" for n, s in {**DATASETS, **WEIGHTS}.items())
    skipped = "; ".join(f"{n}: {why}" for n, why in NOT_DOWNLOADABLE.items())
    download = sub.add_parser(
        "download",
        help="fetch a dataset into the layout the readers take",
        description=f"NAME is one of {names}. Not here: {skipped}.",
    )
    download.add_argument("name", metavar="NAME", help=", ".join([*DATASETS, *WEIGHTS]))
    download.add_argument(
        "path", metavar="DIR", help="target folder (created; reruns resume and skip what is done)"
    )
    download.add_argument("--split", action="append", help="only this split (repeatable); default: all")
    download.add_argument("--workers", type=_positive, default=4, help="parallel transfers (default 4)")
    download.add_argument(
        "--keep-archives", action="store_true", help="keep tarballs/zips in DIR/.download after unpacking"
    )
    download.add_argument(
        "--dry-run", action="store_true", help="print what would be fetched and the disk space it needs"
    )
    download.add_argument(
        "--mirror",
        metavar="BASE_URL",
        help="fetch the publisher's paths from this server instead (gmrw_weights: the URL of the zip itself)",
    )
    download.add_argument(
        "--retries", type=_non_negative, default=5, help="failed attempts in a row per file"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _download(args: argparse.Namespace) -> int:
    from gmrw.datatools.download.http import RetryPolicy
    from gmrw.datatools.download.progress import make_reporter
    from gmrw.datatools.download.registry import WEIGHTS
    from gmrw.datatools.download.report import dry_run_failure, plan_lines, summary_lines
    from gmrw.datatools.download.runner import DownloadSetupError, Options, download

    options = Options(
        workers=args.workers,
        keep_archives=args.keep_archives,
        dry_run=args.dry_run,
        mirror=args.mirror,
        policy=RetryPolicy(retries=args.retries),
    )
    if args.name in WEIGHTS:
        return _download_weights(args, options)
    try:
        summary = download(args.name, args.path, args.split, options, make_reporter(sys.stdout))
    except DownloadSetupError as exc:
        print(f"gmrw-data download: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while planning; the transfers handle their own
        print("gmrw-data download: interrupted before any transfer started", file=sys.stderr)
        return 130
    lines = plan_lines(summary, args.mirror) if args.dry_run else summary_lines(summary)
    print("\n".join(lines))
    failure = dry_run_failure(summary) if args.dry_run else None
    if failure:
        print(f"gmrw-data download: error: {failure}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def _download_weights(args: argparse.Namespace, options) -> int:
    from gmrw.datatools.download.progress import make_reporter
    from gmrw.datatools.download.runner import DownloadSetupError
    from gmrw.datatools.download.weights import download_weights, plan_lines, summary_lines

    if args.split:
        print(f"gmrw-data download: error: {args.name} has no splits; drop --split", file=sys.stderr)
        return 2
    try:
        summary = download_weights(args.name, args.path, options, make_reporter(sys.stdout))
    except DownloadSetupError as exc:
        print(f"gmrw-data download: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(plan_lines(summary) if args.dry_run else summary_lines(summary)))
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "download":
        return _download(args)
    if args.command == "tiny":
        from gmrw.datatools.tiny import write_tiny

        print(write_tiny(args.path, args.format))
        return 0
    if args.command == "photos":
        if args.videos < 1 or args.frames < 2:
            print("gmrw-data photos: --videos must be >= 1 and --frames >= 2", file=sys.stderr)
            return 2
        from gmrw.data.photo_videos import write_tapvid_pickle

        path = write_tapvid_pickle(
            args.path, num_videos=args.videos, num_frames=args.frames, seed=args.seed, progress=True
        )
        print(path)
        return 0
    from gmrw.datatools.check import check_dataset, print_report

    report = check_dataset(args.path, args.format, limit=args.limit, quick=args.quick)
    if not report.splits:  # nothing could be read: no table, the reason in one line
        for error in report.errors or ["nothing to check"]:
            print(f"gmrw-data check: error: {error}", file=sys.stderr)
        return 1
    print_report(report)
    if not report.usable:
        return 1
    if args.strict and report.bad_files:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
