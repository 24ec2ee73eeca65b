"""``gmrw-track VIDEO``: track points through any video file and draw them.

    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --grid 20
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --query 0,120,80 --query 10,300,200
    gmrw-track clip.mp4 --checkpoint kubric_73k.pth --points points.csv --mode direct

Writes ``<out>/<stem>.tracks.npz`` (``tracks`` (N, T, 2) as (x, y) pixels of the original video,
``occluded`` (N, T) bool, ``queries`` (N, 3) as (t, y, x) original pixels — the TAP-Vid order —,
``size`` (H, W), ``fps``) and ``<out>/<stem>.tracks.mp4`` (coloured markers with trails, hollow
where the point is predicted occluded). Both appear only once complete.

The video is read on demand (decord), resized so its short side is the checkpoint's processing size
(``--resize`` to choose; 256 for weights that record none; sides rounded to multiples of 8, which
the model needs), and tracked pair by pair
(:func:`gmrw.tracking.track_source`), so a long video runs in bounded memory.
Pixel coordinates put pixel centres at integers: (0, 0) is the middle of the top-left pixel.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from gmrw.models import flush_denormals
from gmrw.tracking import (
    METHODS,
    MODES,
    FrameSource,
    grid_queries,
    resolve_options,
    scaled_size,
    track_source,
)
from gmrw.training.checkpoints import CheckpointProblem, weights_file

log = logging.getLogger("gmrw.track")


class TrackInputError(ValueError):
    """Input that cannot be tracked (bad video, queries or checkpoint), with a message saying why."""


# ----------------------------------------------------------------------------------- the video


#: Short side frames are decoded at when neither the checkpoint nor --resize says (then ×--upsample).
DEFAULT_SHORT_SIDE = 256


class DecordFrames(FrameSource):
    """Frames of a video file decoded on demand with decord and resized to ``size`` (H, W)."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None, cache_frames: int = 32):
        from gmrw.data.video_io import import_decord

        decord = import_decord()

        self.path = str(path)
        if not Path(self.path).is_file():
            raise TrackInputError(f"video {self.path} does not exist")
        try:
            self.reader = decord.VideoReader(self.path, num_threads=1)
            count = len(self.reader)
            first = self.reader[0].asnumpy() if count else None
        except Exception as exc:  # decord raises DECORDError, a plain Exception
            raise TrackInputError(f"cannot read video {self.path}: {type(exc).__name__}: {exc}") from None
        if first is None:
            raise TrackInputError(f"cannot read video {self.path}: it holds no frames")
        if first.ndim != 3 or first.shape[-1] != 3:
            # decord mis-decodes some tiny or exotic frame layouts (e.g. 16 px wide) this way
            raise TrackInputError(
                f"cannot read video {self.path}: decoded a frame of unexpected shape {first.shape}"
            )
        self.original_size = (int(first.shape[0]), int(first.shape[1]))
        try:
            fps = float(self.reader.get_avg_fps())
        except Exception:
            fps = 0.0
        self.fps = fps if math.isfinite(fps) and fps > 0 else 25.0
        height, width = size or self.original_size
        super().__init__(count, height, width, cache_frames)

    def resize_to(self, size: tuple[int, int]) -> None:
        """Serve frames at ``size`` (H, W) from now on."""
        self.height, self.width = int(size[0]), int(size[1])
        self._cache.clear()

    def decode(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at the original size: (K, H0, W0, 3) uint8."""
        try:
            return self.reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:
            raise TrackInputError(
                f"cannot decode frames {indices[0]}…{indices[-1]} of {self.path}: {type(exc).__name__}: {exc}"
            ) from None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        frames = torch.from_numpy(self.decode(indices))
        if (self.height, self.width) == self.original_size:
            return frames
        x = frames.permute(0, 3, 1, 2).float()
        shrink = self.height < self.original_size[0] or self.width < self.original_size[1]
        x = torch.nn.functional.interpolate(
            x, size=(self.height, self.width), mode="bilinear", align_corners=False, antialias=shrink
        )
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    def original_frames(self, chunk: int = 16) -> Iterator[np.ndarray]:
        """Every frame at the original size, in order, ``chunk`` decoded at a time."""
        for start in range(0, self.num_frames, chunk):
            yield from self.decode(list(range(start, min(start + chunk, self.num_frames))))


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


def check_user_queries(points_txy: np.ndarray, num_frames: int, height: int, width: int) -> None:
    """TrackInputError naming the first query (t, x, y) that is not an integer frame of the video
    or not inside the ``width`` × ``height`` frame."""
    for t, x, y in points_txy:
        label = f"query t={t:g}, x={x:g}, y={y:g}"
        if not all(math.isfinite(v) for v in (t, x, y)):
            raise TrackInputError(f"{label}: not a finite number")
        if abs(t - round(t)) > 1e-6:
            raise TrackInputError(f"{label}: the frame index t must be an integer")
        if not 0 <= round(t) < num_frames:
            raise TrackInputError(
                f"{label}: frame {round(t)} is out of range, the video has frames 0..{num_frames - 1}"
            )
        if not (0 <= x <= width and 0 <= y <= height):
            raise TrackInputError(f"{label}: outside the {width}x{height} frame")


def to_processing(points_txy: np.ndarray, original: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(N, 3) (t, x, y) original pixels → (N, 3) (t, y, x) pixels of the resized frames (pixel
    centres kept at integers, as the bilinear resize maps them), clamped into the frame."""
    sy, sx = size[0] / original[0], size[1] / original[1]
    t = points_txy[:, 0]
    x = np.clip((points_txy[:, 1] + 0.5) * sx - 0.5, 0, size[1])
    y = np.clip((points_txy[:, 2] + 0.5) * sy - 0.5, 0, size[0])
    return torch.from_numpy(np.stack([np.round(t), y, x], axis=-1).astype(np.float32))


def to_original(tracks: torch.Tensor, original: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(N, T, 2) (x, y) pixels of the resized frames → of the original video."""
    scale = np.array([size[1] / original[1], size[0] / original[0]], dtype=np.float64)
    return ((tracks.double().numpy() + 0.5) / scale - 0.5).astype(np.float32)


# ----------------------------------------------------------------------------------- outputs


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` to exactly ``path`` (``np.savez`` given a name would append ``.npz``)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_checkpoint(checkpoint: str | None, device: torch.device):
    from gmrw.models import CheckpointError, load_model

    if checkpoint is None:
        log.warning("no --checkpoint given: the model has random weights and its tracks are meaningless")
        return load_model(None).to(device)
    if not Path(checkpoint).expanduser().exists():
        raise TrackInputError(f"checkpoint {checkpoint} does not exist")
    try:
        choice = weights_file(checkpoint, key="--checkpoint")
    except CheckpointProblem as exc:
        raise TrackInputError(str(exc)) from None
    for line in choice.report():
        log.warning("%s", line)
    path = choice.path
    try:
        return load_model(path).to(device)
    except CheckpointError as exc:
        raise TrackInputError(f"checkpoint {path}: {exc}") from None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrackInputError(f"--device {name}: no CUDA GPU is visible")
    return torch.device(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmrw-track",
        description="Track points through a video with a GMRW model; writes <stem>.tracks.npz and "
        "<stem>.tracks.mp4. Queries are t,x,y: frame index and pixel position in the original video.",
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
        "--mode", choices=MODES, help="chained or direct tracking (default: the checkpoint's setting)"
    )
    model.add_argument(
        "--upsample",
        type=float,
        help=f"upsample frames (decoded at short side {DEFAULT_SHORT_SIDE}) before the model (paper: 2 or 4)",
    )
    model.add_argument(
        "--method", choices=METHODS, help="flow read-out (default: the checkpoint's, else weighted_sum)"
    )
    model.add_argument("--window", type=float, help="window radius in feature cells for weighted_argmax")
    model.add_argument(
        "--resize",
        type=int,
        help="short side the model sees (0: keep the video's; default: the checkpoint's processing "
        f"size, else {DEFAULT_SHORT_SIDE})",
    )
    model.add_argument("--pair-batch-size", type=int, default=8, help="frame pairs per model call")
    model.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default=".", help="output folder (default: current directory)")
    output.add_argument("--name", help="output file stem (default: the video's)")
    output.add_argument("--trail", type=int, default=10, help="frames of trail behind each point")
    output.add_argument("--no-video", action="store_true", help="write the .npz only")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Track as ``args`` say; returns what was written. Raises TrackInputError for bad input."""
    if args.grid is not None and args.grid < 1:
        raise TrackInputError(f"--grid {args.grid}: the grid needs at least 1 point per side")
    if args.upsample is not None and (args.upsample <= 0 or not math.isfinite(args.upsample)):
        raise TrackInputError(f"--upsample {args.upsample}: must be a positive number")
    if args.method == "weighted_argmax" and args.window is None:
        raise TrackInputError("--method weighted_argmax needs --window (radius in feature cells, e.g. 5)")
    if args.resize is not None and args.upsample is not None:
        raise TrackInputError("give --resize or --upsample, not both")
    if args.resize is not None and 0 < args.resize < 8:
        raise TrackInputError(f"--resize {args.resize}: the model needs a short side of at least 8 px")
    device = pick_device(args.device)
    # Global-matching softmaxes produce float32 denormals that x86 CPUs process in slow microcode.
    flush_denormals(True)
    source = DecordFrames(args.video, cache_frames=max(32, 4 * args.pair_batch_size))
    original = source.original_size
    if source.num_frames < 2:
        raise TrackInputError(
            f"video {args.video} has {source.num_frames} frame(s); tracking needs at least 2"
        )
    model = load_checkpoint(args.checkpoint, device)
    keep_size = args.resize == 0
    options = resolve_options(
        model,
        mode=args.mode,
        method=args.method,
        window=args.window,
        upsample_factor=1 if keep_size else args.upsample,
        processing_size=None if keep_size else args.resize,
    )
    short_side = 0 if keep_size else options.processing_size or DEFAULT_SHORT_SIDE
    size = scaled_size(*original, short_side)
    source.resize_to(size)

    points = [np.array([parse_query(q) for q in args.query], dtype=np.float64).reshape(-1, 3)]
    if args.points:
        points.append(read_points_file(args.points))
    grid = args.grid if args.grid is not None else (10 if not args.query and not args.points else None)
    if grid:
        if not 0 <= args.grid_frame < source.num_frames:
            raise TrackInputError(
                f"--grid-frame {args.grid_frame} is out of range, the video has frames 0..{source.num_frames - 1}"
            )
        tyx = grid_queries(grid, original[0], original[1], args.grid_frame).numpy()
        points.append(tyx[:, [0, 2, 1]] - np.array([0.0, 0.5, 0.5]))  # cell centres, pixel-centre convention
    points_txy = np.concatenate(points)
    if len(points_txy) == 0:
        raise TrackInputError("no query points: give --grid N, --points FILE or --query t,x,y")
    check_user_queries(points_txy, source.num_frames, *original)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or Path(args.video).stem
    npz_path, mp4_path = out_dir / f"{stem}.tracks.npz", out_dir / f"{stem}.tracks.mp4"

    log.info(
        "%s: %d frames %dx%d, tracked at %dx%d (×%g into the model), %d points, %s mode, on %s",
        args.video,
        source.num_frames,
        original[1],
        original[0],
        size[1],
        size[0],
        1 if options.processing_size else options.upsample_factor,
        len(points_txy),
        options.mode,
        device,
    )
    start = time.perf_counter()
    tracks, occluded = track_source(
        model,
        source,
        to_processing(points_txy, original, size),
        **options.as_dict(),
        pair_batch_size=args.pair_batch_size,
        progress=True,
    )
    seconds = time.perf_counter() - start
    tracks_xy = to_original(tracks, original, size)
    occluded = occluded.numpy()
    # Queries as given, in the TAP-Vid (t, y, x) order of the rest of gmrw.
    queries_tyx = points_txy[:, [0, 2, 1]].astype(np.float32)

    tmp_npz = out_dir / f".{npz_path.name}.partial{os.getpid()}"
    try:
        # Both outputs appear only once complete: the npz goes to a temporary name and is renamed
        # after the mp4 (itself written atomically) is done.
        write_npz(
            tmp_npz,
            tracks=tracks_xy,
            occluded=occluded,
            queries=queries_tyx,
            size=np.array(original),
            fps=np.array(source.fps),
        )
        if not args.no_video:
            from tqdm.auto import tqdm

            from gmrw.viz.tracks import render_tracks, write_video

            frames = tqdm(source.original_frames(), total=source.num_frames, desc="drawing", unit="frame")
            write_video(
                mp4_path, render_tracks(frames, tracks_xy, occluded, trail_length=args.trail), source.fps
            )
        os.replace(tmp_npz, npz_path)
    finally:
        tmp_npz.unlink(missing_ok=True)
    return {
        "npz": str(npz_path),
        "mp4": None if args.no_video else str(mp4_path),
        "points": len(points_txy),
        "frames": source.num_frames,
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (TrackInputError, ValueError) as error:
        print(f"gmrw-track: error: {error}", file=sys.stderr)
        return 1
    pairs_note = (
        f"tracked {result['points']} points over {result['frames']} frames in {result['seconds']:.1f} s"
    )
    print(pairs_note)
    print(f"tracks: {result['npz']}")
    if result["mp4"]:
        print(f"video:  {result['mp4']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
