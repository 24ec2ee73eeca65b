"""``gmrw-track VIDEO``: track points through any video file and draw them.

    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --grid 20
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --query t=0,y=120,x=80 --query t=10,y=300,x=200
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --points points.csv --mode direct  # header t,y,x
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --dense 4          # every 4th pixel of frame 0
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --grid 10 --online # frame by frame, as a stream

Argument parsing and printing around :class:`gmrw.Predictor` (which owns decoding, the model and
coordinates) and :func:`gmrw.tracking.files.track_to_files` (tracking and writing). Query points
name their fields (``t=0,y=120,x=80``, any order; a points file names its columns in a header
line), so no order is ever guessed: a bare ``0,120,80`` is refused. Writes
``<out>/<stem>.tracks.npz`` (``tracks`` (N, T, 2) as (x, y) pixels of the video, ``occluded``
(N, T) bool, ``queries`` (N, 3) as (t, y, x) pixels — the TAP-Vid order —,
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

from gmrw.choices import FLOW_METHODS, TRACKING_MODES, TRACKING_PRECISIONS
from gmrw.tracking import FrameSource, Predictor, load_tracks
from gmrw.tracking.files import TrackedFile, track_to_files
from gmrw.tracking.inputs import dense_queries

log = logging.getLogger("gmrw.track")


class TrackInputError(ValueError):
    """Input that cannot be tracked (bad video, queries or checkpoint), with a message saying why."""


# ----------------------------------------------------------------------------------- queries


QUERY_FIELDS = ("t", "y", "x")
QUERY_HELP = "name the fields, e.g. t=0,y=120,x=80 (frame index, then row y and column x in pixels)"


def parse_query(text: str) -> tuple[float, float, float]:
    """``"t=0,y=120,x=80"`` (fields in any order) → (t, y, x). Bare numbers are refused: the order
    of ``0,120,80`` cannot be told from the text (this option once took t,x,y)."""
    fields: dict[str, float] = {}
    for part in (p.strip() for p in text.replace(" ", ",").split(",")):
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if not equals or name not in QUERY_FIELDS or name in fields:
            raise TrackInputError(f"--query {text!r}: {QUERY_HELP}")
        try:
            fields[name] = float(value)
        except ValueError:
            raise TrackInputError(f"--query {text!r}: {name}={value!r} is not a number") from None
    if set(fields) != set(QUERY_FIELDS):
        raise TrackInputError(f"--query {text!r}: {QUERY_HELP}")
    return fields["t"], fields["y"], fields["x"]


def read_points_file(path: str | os.PathLike) -> np.ndarray:
    """(N, 3) rows of (t, y, x) from a ``.csv``/``.txt`` table whose first line names its columns
    (``t,y,x`` in any order; comma or whitespace separated; ``#`` comments skipped), or from a
    ``gmrw-track`` ``.npz`` (its ``queries``). A ``.npy`` array, or a table without the header,
    is refused: its column order would be a guess."""
    path = Path(path)
    if not path.is_file():
        raise TrackInputError(f"points file {path} does not exist")
    if path.suffix == ".npy":
        raise TrackInputError(
            f"points file {path}: a .npy array does not name its columns; write a .csv whose first "
            "line is t,y,x, or pass a gmrw-track .npz"
        )
    if path.suffix == ".npz":
        try:
            points = load_tracks(path)["queries"]
        except Exception as exc:
            raise TrackInputError(f"cannot read points file {path} as a gmrw-track .npz: {exc}") from None
    else:
        header, rows = None, []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = [f for f in line.split("#", 1)[0].replace(",", " ").split() if f]
            if not fields:
                continue
            if header is None:
                names = [f.lower() for f in fields]
                if sorted(names) != sorted(QUERY_FIELDS):
                    raise TrackInputError(
                        f"{path}:{number}: the first line must name the columns t, y and x (in any "
                        f"order, e.g. t,y,x), got {line.strip()!r}"
                    )
                header = [names.index(name) for name in QUERY_FIELDS]
                continue
            try:
                values = [float(f) for f in fields]
            except ValueError:
                raise TrackInputError(f"{path}:{number}: not three numbers: {line.strip()!r}") from None
            if len(values) != 3:
                raise TrackInputError(f"{path}:{number}: expected 3 numbers, got {len(values)}")
            rows.append([values[i] for i in header])
        points = np.array(rows, dtype=np.float64).reshape(-1, 3)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise TrackInputError(
            f"points file {path} must hold rows of t,y,x; got an array of shape {points.shape}"
        )
    return points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmrw-track",
        description="Track points through a video with a GMRW model; writes <stem>.tracks.npz and "
        "<stem>.tracks.mp4 (with --dense: <stem>.dense.npz and .mp4). Query points are t=FRAME,y=ROW,x=COL "
        "in pixels of the video (pixel centres at integers), as the Python API's (t, y, x) rows.",
    )
    parser.add_argument("video", help="video file (anything decord/ffmpeg reads: mp4, mov, webm, ...)")
    queries = parser.add_argument_group("queries (combine freely; default --grid 10)")
    queries.add_argument("--grid", type=int, metavar="N", help="an N×N grid of points on frame --grid-frame")
    queries.add_argument(
        "--grid-frame", type=int, default=0, metavar="T", help="frame of the grid (default 0)"
    )
    queries.add_argument(
        "--points",
        metavar="FILE",
        help=".csv/.txt whose first line names the columns (t,y,x), or a gmrw-track .npz",
    )
    queries.add_argument(
        "--query", action="append", default=[], metavar="t=T,y=Y,x=X", help="one point; repeat for more"
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
        help="the model sees the frames scaled by this (the paper: 2 or 4 on 256x256 TAP-Vid frames)",
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
        "--chained-candidate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="direct mode: also move each point on from its previous frame and keep the candidate "
        "that comes back closer to the query (~2x the pairs; default: the checkpoint's setting)",
    )
    model.add_argument(
        "--round-trip-correction",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="direct mode with a round trip: move each match back by half of its round trip's "
        "miss where the round trip passes (default: the checkpoint's setting)",
    )
    model.add_argument(
        "--resize",
        type=int,
        help="short side the model sees (0: keep the video's; default: the checkpoint's processing "
        "size, else the video's own size)",
    )
    model.add_argument(
        "--fine-size",
        type=int,
        metavar="PX",
        help="checkpoints with the fine-match step: short side of the frames its maps come from "
        "(0: the video's own size, at most twice --resize's; default: the checkpoint's setting, else "
        "--resize's)",
    )
    model.add_argument("--pair-batch-size", type=int, default=8, help="frame pairs per model call")
    model.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    model.add_argument(
        "--precision",
        choices=TRACKING_PRECISIONS,
        default="fp32",
        help="the encoder's and transformer's arithmetic: bf16 is 2-3x faster on CPUs with AMX and far "
        "slower on others; auto picks bf16 only where it is fast (matching stays float32)",
    )
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
    tyx = [np.array([parse_query(q) for q in args.query], dtype=np.float64).reshape(-1, 3)]
    if args.points:
        tyx.append(read_points_file(args.points))
    given = np.concatenate(tyx)
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
        chained_candidate=args.chained_candidate,
        fine_size=args.fine_size,
        round_trip_correction=args.round_trip_correction,
        pair_batch_size=args.pair_batch_size,
        progress=True,
        compile=args.compile,
        precision=args.precision,
    )
    source = predictor.open(args.video)
    if args.dense is not None:
        if not 0 <= args.grid_frame < source.num_frames:
            raise TrackInputError(
                f"--grid-frame {args.grid_frame} is out of range, the video has frames 0..{source.num_frames - 1}"
            )
        queries = dense_queries(*source.size, args.dense, args.grid_frame)
    else:
        queries = user_queries(args, predictor, source)
    if len(queries) == 0:
        raise TrackInputError("no query points: give --grid N, --points FILE or --query t=T,y=Y,x=X")
    height, width = source.size
    model_height, model_width = predictor.model_size(height, width)
    options = predictor.options
    log.info(
        "%s: %d frames %dx%d, the model sees %dx%d, %d points, %s%s mode, on %s in %s",
        args.video,
        source.num_frames,
        width,
        height,
        model_width,
        model_height,
        len(queries),
        "online " if args.online else "",
        options.mode,
        predictor.device,
        predictor.precision,
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
