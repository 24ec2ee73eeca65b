"""``gmrw-data``: dataset utilities.

    gmrw-data check DIR --format FORMAT [--limit N] [--quick] [--strict]
    gmrw-data tiny DIR --format FORMAT

FORMAT is kinetics, kubric, tapvid_davis, tapvid_rgb_stacking, tapvid_kinetics, tapvid_kubric (tracks
sampled from movi_e's validation split: DIR is the TFDS data_dir) or tapvid_kubric_tsv (the
reference's validation_data.tsv).

``check`` prints counts, resolutions, frame counts and bad files; it exits 1 when the folder is
unusable (missing, wrong layout, nothing readable) and, with ``--strict``, also when any bad file
was found. ``tiny`` writes a tiny dataset in the real format (for smoke runs).
"""

from __future__ import annotations

import argparse
import sys

from gmrw.data.check import FORMATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmrw-data", description="gmrw dataset utilities")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a dataset folder or file")
    check.add_argument(
        "path",
        help="dataset root (kinetics; kubric and tapvid_kubric: the TFDS data_dir), or a pickle / shard folder / tsv",
    )
    check.add_argument("--format", required=True, choices=FORMATS)
    check.add_argument("--limit", type=int, default=None, help="check at most N items per split")
    check.add_argument("--quick", action="store_true", help="open files only; do not decode frames")
    check.add_argument("--strict", action="store_true", help="exit 1 when any bad file is found")
    tiny = sub.add_parser("tiny", help="write a tiny dataset in the real format")
    tiny.add_argument("path")
    tiny.add_argument("--format", required=True, choices=FORMATS)
    return parser


def _tiny(path: str, fmt: str) -> str:
    from pathlib import Path

    from gmrw.data import testing

    if fmt == "kinetics":
        testing.write_tiny_kinetics(path)
        return path
    if fmt in ("kubric", "tapvid_kubric"):
        return str(testing.write_tiny_movi_e(path))
    if fmt == "tapvid_kubric_tsv":
        return str(testing.write_kubric_tsv(Path(path) / "validation_data.tsv"))
    if fmt == "tapvid_kinetics":
        return str(testing.write_tapvid_pickle(Path(path) / "0000_of_0010.pkl", "kinetics"))
    kind = fmt.removeprefix("tapvid_")
    return str(testing.write_tapvid_pickle(Path(path) / f"{fmt}.pkl", kind))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tiny":
        print(_tiny(args.path, args.format))
        return 0
    from gmrw.data.check import check_dataset, print_report

    report = check_dataset(args.path, args.format, limit=args.limit, quick=args.quick)
    print_report(report)
    if not report.usable:
        return 1
    if args.strict and report.bad_files:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
