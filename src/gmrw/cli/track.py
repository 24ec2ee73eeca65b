"""``gmrw-track VIDEO``: track points through any video file and draw them.

    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --grid 20
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --query 0,120,80 --query 10,300,200
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --points points.csv --mode direct
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --dense 4          # every 4th pixel of frame 0
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --grid 10 --online # frame by frame, as a stream

Argument parsing and printing around :class:`gmrw.Predictor` (which owns decoding, resizing, the
model and coordinates) and :func:`gmrw.tracking.files.track_to_files` (tracking and writing). Writes
``<out>/<stem>.tracks.npz`` (``tracks`` (N, T, 2) as (x, y) pixels of the original video,
``occluded`` (N, T) bool, ``queries`` (N, 3) as (t, y, x) original pixels — the TAP-Vid order —,
``size`` (H, W), ``fps``) and ``<out>/<stem>.tracks.mp4``; with ``--dense``, ``<stem>.dense.npz``
(compact: float16 tracks, packed visibility) and ``<stem>.dense.mp4`` (dots coloured by where they
start). Outputs appear only once complete. Pixel coordinates put pixel centres at integers.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gmrw.tracking import (
    DEFAULT_SHORT_SIDE,
    FLOW_METHODS,
    TRACKING_MODES,
    FrameSource,
    Predictor,
    dense_queries,
)
from gmrw.tracking.files import TrackedFile, track_to_files

log = logging.getLogger("gmrw.track")


class TrackInputError(ValueError):
    """Input that cannot be tracked (bad video, queries or checkpoint), with a message saying why."""


# ----------------------------------------------------------------------------------- queries


def parse_query(text: str) -> tuple[float, float, float]:
    """``"t,x,y"`` → (t, x, y)."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise TrackInputError(f"--query {text!r}: expected three numbers t,x,y (frame, x, y in pixels)")
    return values  # type: ignore[return-value]


def read_points_file(path: str | os.PathLike) -> np.ndarray:
    """(N, 3) rows of (t, x, y) from a ``.npy`` array or a ``.txt``/``.csv`` table (comma or
    whitespace separated; a header line and ``#`` comments are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise TrackInputError(f"points file {path} does not exist")
    if path.suffix == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise TrackInputError(f"cannot read points file {path}: {exc}") from None
    else:
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [f for f in line.replace(",", " ").split() if f]
            try:
                rows.append([float(f) for f in fields])
            except ValueError:
                if rows:  # only the first non-empty line may be a header
                    raise TrackInputError(f"{path}:{number}: not three numbers t,x,y: {line!r}") from None
        points = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 3))
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise TrackInputError(
            f"points file {path} must hold rows of t,x,y; got an array of shape {points.shape}"
        )
    return points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmrw-track",
        description="Track points through a video with a GMRW model; writes <stem>.tracks.npz and "
        "<stem>.tracks.mp4 (with --dense: <stem>.dense.npz and .mp4). Queries are t,x,y: frame index "
        "and pixel position in the original video.",
    )
    parser.add_argument("video", help="video file (anything decord/ffmpeg reads: mp4, mov, webm, ...)")
    queries = parser.add_argument_group("queries (combine freely; default --grid 10)")
    queries.add_argument("--grid", type=int, metavar="N", help="an N×N grid of points on frame --grid-frame")
    queries.add_argument(
        "--grid-frame", type=int, default=0, metavar="T", help="frame of the grid (default 0)"
    )
    queries.add_argument("--points", metavar="FILE", help=".npy, .txt or .csv with rows t,x,y")
    queries.add_argument(
        "--query", action="append", default=[], metavar="T,X,Y", help="one point; repeat for more"
    )
    model = parser.add_argument_group("model and tracking")
    model.add_argument(
        "--checkpoint", help="the paper's .pth, a gmrw .ckpt or a run directory (default: random weights)"
    )
    model.add_argument(
        "--mode",
        choices=TRACKING_MODES,
        help="chained or direct tracking (default: the checkpoint's setting)",
    )
    model.add_argument(
        "--upsample",
        type=float,
        help=f"upsample frames (decoded at short side {DEFAULT_SHORT_SIDE}) before the model (paper: 2 or 4)",
    )
    model.add_argument(
        "--method", choices=FLOW_METHODS, help="flow read-out (default: the checkpoint's, else weighted_sum)"
    )
    model.add_argument("--window", type=float, help="window radius in feature cells for weighted_argmax")
    model.add_argument(
        "--round-trip",
        type=float,
        metavar="PX",
        help="direct mode: also occluded where the flow back to the query frame misses it by PX px "
        "(default: the checkpoint's setting)",
    )
    model.add_argument(
        "--resize",
        type=int,
        help="short side the model sees (0: keep the video's; default: the checkpoint's processing "
        f"size, else {DEFAULT_SHORT_SIDE})",
    )
    model.add_argument("--pair-batch-size", type=int, default=8, help="frame pairs per model call")
    model.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    model.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first (compiling takes a while; pays off on long videos only)",
    )
    model.add_argument(
        "--dense",
        type=int,
        metavar="STRIDE",
        help="dense tracking: every STRIDE-th pixel of frame --grid-frame (instead of queries)",
    )
    model.add_argument(
        "--online",
        action="store_true",
        help="track frame by frame as a stream would arrive (positions before a query's frame are NaN)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", default=".", help="output folder (default: current directory)")
    output.add_argument("--name", help="output file stem (default: the video's)")
    output.add_argument("--trail", type=int, default=10, help="frames of trail behind each point")
    output.add_argument("--no-video", action="store_true", help="write the .npz only")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """TrackInputError for options that cannot go together or make no sense, before any work."""
    if args.grid is not None and args.grid < 1:
        raise TrackInputError(f"--grid {args.grid}: the grid needs at least 1 point per side")
    if args.upsample is not None and (args.upsample <= 0 or not math.isfinite(args.upsample)):
        raise TrackInputError(f"--upsample {args.upsample}: must be a positive number")
    if args.resize is not None and args.upsample is not None:
        raise TrackInputError("give --resize or --upsample, not both")
    if args.resize is not None and 0 < args.resize < 8:
        raise TrackInputError(f"--resize {args.resize}: the model needs a short side of at least 8 px")
    if args.resize is not None and args.resize < 0:
        raise TrackInputError(f"--resize {args.resize}: must be 0 (keep the size) or a short side in px")
    if args.dense is not None:
        if args.dense < 1:
            raise TrackInputError(f"--dense {args.dense}: the stride must be at least 1 pixel")
        if args.grid is not None or args.points or args.query:
            raise TrackInputError(
                "--dense follows every STRIDE-th pixel: give no --grid, --points or --query"
            )
        if args.online:
            raise TrackInputError("--dense and --online do not go together")
    if args.pair_batch_size < 1:
        raise TrackInputError(f"--pair-batch-size {args.pair_batch_size}: must be at least 1")


def user_queries(args: argparse.Namespace, predictor: Predictor, source: FrameSource) -> torch.Tensor:
    """The (N, 3) (t, y, x) queries the arguments ask for, in the video's pixels, checked."""
    txy = [np.array([parse_query(q) for q in args.query], dtype=np.float64).reshape(-1, 3)]
    if args.points:
        txy.append(read_points_file(args.points))
    given = np.concatenate(txy)[:, [0, 2, 1]]
    grid = args.grid if args.grid is not None else (0 if len(given) else 10)
    if grid and not 0 <= args.grid_frame < source.num_frames:
        raise TrackInputError(
            f"--grid-frame {args.grid_frame} is out of range, the video has frames 0..{source.num_frames - 1}"
        )
    return predictor.make_queries(
        source, queries=given if len(given) else None, grid_size=grid, grid_query_frame=args.grid_frame
    )


def run(args: argparse.Namespace) -> TrackedFile:
    """Track as ``args`` say; returns what was written. Raises ValueError (TrackInputError for
    bad arguments) for input that cannot be tracked."""
    check_args(args)
    predictor = Predictor(
        args.checkpoint,
        args.device,
        mode=args.mode,
        method=args.method,
        window=args.window,
        upsample_factor=args.upsample,
        processing_size=args.resize,
        round_trip=args.round_trip,
        pair_batch_size=args.pair_batch_size,
        progress=True,
        compile=args.compile,
    )
    source = predictor.open(args.video)
    if args.dense is not None:
        if not 0 <= args.grid_frame < source.num_frames:
            raise TrackInputError(
                f"--grid-frame {args.grid_frame} is out of range, the video has frames 0..{source.num_frames - 1}"
            )
        queries = dense_queries(*source.original_size, args.dense, args.grid_frame)
    else:
        queries = user_queries(args, predictor, source)
    if len(queries) == 0:
        raise TrackInputError("no query points: give --grid N, --points FILE or --query t,x,y")
    height, width = source.original_size
    options = predictor.options
    log.info(
        "%s: %d frames %dx%d, tracked at %dx%d (×%g into the model), %d points, %s%s mode, on %s",
        args.video,
        source.num_frames,
        width,
        height,
        source.width,
        source.height,
        1 if options.processing_size else options.upsample_factor,
        len(queries),
        "online " if args.online else "",
        options.mode,
        predictor.device,
    )
    return track_to_files(
        predictor,
        source,
        queries,
        args.out,
        args.name or Path(args.video).stem,
        dense=args.dense,
        online=args.online,
        trail=args.trail,
        draw=not args.no_video,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except ValueError as error:
        print(f"gmrw-track: error: {error}", file=sys.stderr)
        return 1
    print(f"tracked {result.points} points over {result.frames} frames in {result.seconds:.1f} s")
    if result.step_seconds:
        steps = result.step_seconds
        print(
            f"online: {1000 * statistics.median(steps):.0f} ms per frame (median; first "
            f"{1000 * steps[0]:.0f} ms, slowest {1000 * max(steps):.0f} ms)"
        )
    print(f"tracks: {result.npz}")
    if result.mp4:
        print(f"video:  {result.mp4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
