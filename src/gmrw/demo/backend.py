"""What the demo does, without the web page: check an upload, show a frame with its query points,
track, write the outputs. Each problem a user can cause is a :class:`DemoError` whose message the
page shows as it is; :mod:`gmrw.demo.app` only wires these functions to Gradio components.

Everything is written inside ``workdir`` (the app's own temporary folder).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmrw.tracking import Predictor, VideoFile, save_tracks
from gmrw.viz.tracks import draw_discs, track_colors, write_tracks_video

#: The long side small frames are enlarged to on screen, so a point can be clicked precisely.
DISPLAY_SIDE = 480

RANDOM_WEIGHTS = "random weights (untrained: for trying the page only)"


class DemoError(ValueError):
    """Something the user can fix (a bad upload, no points); the message says what."""


@dataclass(frozen=True)
class Limits:
    """What one upload may be: file size, video length and frame size."""

    max_megabytes: float = 50.0
    max_frames: int = 300
    max_side: int = 1920


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    height: int
    width: int
    fps: float

    @property
    def display_scale(self) -> int:
        """Integer factor frames are enlarged by on screen (1 for frames already large enough)."""
        long_side = max(self.height, self.width)
        return math.ceil(DISPLAY_SIDE / long_side) if long_side < DISPLAY_SIDE else 1


@dataclass(frozen=True)
class RunResult:
    video: Path
    npz: Path
    message: str


def enlarge(frame: np.ndarray, k: int) -> np.ndarray:
    """(H, W, 3) → (H·k, W·k, 3), each pixel a k × k block (pixel p's centre lands on (p + 0.5)·k - 0.5)."""
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1) if k > 1 else frame


class DemoBackend:
    """The demo's state that outlives a request: the checkpoints (loaded once), limits, workdir.

    Args:
        checkpoints: display name → checkpoint path (None: random weights).
        workdir: the folder every output goes to.
        device: where the model runs (``"auto"``: a GPU if there is one).
        precision: the encoder's and transformer's arithmetic (``"fp32"``, ``"bf16"``, ``"auto"``:
            bf16 where it is fast), as :class:`gmrw.Predictor`'s.
    """

    def __init__(
        self,
        checkpoints: Mapping[str, str | None],
        workdir: str | Path,
        limits: Limits = Limits(),
        device: str = "auto",
        precision: str = "fp32",
    ):
        if not checkpoints:
            raise ValueError("the demo needs at least one checkpoint choice")
        self.checkpoints = dict(checkpoints)
        self.workdir = Path(workdir)
        self.limits = limits
        self.device = device
        self.precision = precision
        self._predictors: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def predictor(self, name: str) -> Predictor:
        """The Predictor of checkpoint ``name``, loaded on first use and kept."""
        if name not in self.checkpoints:
            raise DemoError(f"unknown checkpoint {name!r}; choose one of {sorted(self.checkpoints)}")
        with self._lock:
            if name not in self._predictors:
                self._predictors[name] = Predictor(
                    self.checkpoints[name], self.device, progress=True, precision=self.precision
                )
            return self._predictors[name]

    # ------------------------------------------------------------------------------ upload
    def open_video(self, path: str | Path | None) -> VideoInfo:
        """Check an uploaded file against the limits and that it is a video with ≥ 2 frames."""
        if not path:
            raise DemoError("no video: upload one (mp4, mov, webm, …) or pick the example")
        path = Path(path)
        if not path.is_file():
            raise DemoError("the upload did not arrive; please upload the video again")
        megabytes = path.stat().st_size / 2**20
        if megabytes > self.limits.max_megabytes:
            raise DemoError(
                f"{path.name} is {megabytes:.3g} MB; this demo takes videos up to {self.limits.max_megabytes:g} MB"
            )
        try:
            video = VideoFile(path, cache_frames=0)
        except ValueError:
            raise DemoError(
                f"{path.name} is not a video this demo can read (try an mp4 with H.264)"
            ) from None
        if video.num_frames < 2:
            raise DemoError(f"{path.name} has {video.num_frames} frame; tracking needs at least 2")
        if video.num_frames > self.limits.max_frames:
            raise DemoError(
                f"{path.name} has {video.num_frames} frames; this demo takes at most "
                f"{self.limits.max_frames} (trim or subsample it first)"
            )
        height, width = video.size
        if max(height, width) > self.limits.max_side:
            raise DemoError(
                f"{path.name} is {width}x{height}; this demo takes frames up to {self.limits.max_side} px "
                "on the long side (scale it down first)"
            )
        return VideoInfo(str(path), video.num_frames, height, width, video.fps)

    def describe(self, info: VideoInfo) -> str:
        return f"{Path(info.path).name}: {info.num_frames} frames, {info.width}x{info.height}, {info.fps:.3g} fps"

    # ---------------------------------------------------------------------------- points
    def frame_image(self, info: VideoInfo, t: int, points: list[list[float]]) -> np.ndarray:
        """Frame ``t`` as shown on the page (enlarged by ``display_scale``), with the query points
        (t, y, x) of that frame drawn in their colours: (H·k, W·k, 3) uint8."""
        t = int(np.clip(t, 0, info.num_frames - 1))
        k = info.display_scale
        frame = enlarge(VideoFile(info.path, cache_frames=0).read([t])[0], k)
        here = [i for i, p in enumerate(points) if round(p[0]) == t]
        if here:
            xy = np.array([[points[i][2], points[i][1]] for i in here], dtype=np.float32)
            colors = track_colors(len(points))[here]
            image = frame.astype(np.float32)
            draw_discs(image, (xy + 0.5) * k - 0.5, colors, radius=max(5.0, 1.5 * k))
            frame = np.clip(image.round(), 0, 255).astype(np.uint8)
        return frame

    def add_point(self, info: VideoInfo, t: int, clicked: tuple[int, int], points: list) -> list:
        """The click at display pixel ``clicked`` (x, y) on frame ``t``, added as a (t, y, x) query
        in the video's pixels."""
        k = info.display_scale
        x = float(np.clip((clicked[0] + 0.5) / k - 0.5, 0, info.width - 1))
        y = float(np.clip((clicked[1] + 0.5) / k - 0.5, 0, info.height - 1))
        return [*points, [int(t), y, x]]

    def describe_points(self, points: list) -> str:
        if not points:
            return "No points yet: click on the frame to add some, or ask for a grid."
        rows = ", ".join(f"t={int(t)} (x={x:.0f}, y={y:.0f})" for t, y, x in points[:12])
        more = f" and {len(points) - 12} more" if len(points) > 12 else ""
        return f"{len(points)} point(s): {rows}{more}"

    # ---------------------------------------------------------------------------- tracking
    def run(
        self,
        info: VideoInfo,
        points: list,
        grid_size: int,
        grid_frame: int,
        checkpoint: str,
        report: Callable[[float, str], None] | None = None,
    ) -> RunResult:
        """Track the points (and a ``grid_size``² grid on ``grid_frame``) and write the tracks
        video and npz (the ``gmrw-track`` layout) into a fresh folder of ``workdir``."""
        report = report or (lambda fraction, text: None)
        grid_size = int(grid_size or 0)
        if grid_size < 0 or grid_size > 50:
            raise DemoError(f"grid size {grid_size}: choose 0 (none) to 50")
        if not points and not grid_size:
            raise DemoError("no query points: click on the frame to add some, or ask for a grid")
        report(0.0, "loading the model")
        predictor = self.predictor(checkpoint)
        source = predictor.open(info.path)
        queries = predictor.make_queries(
            source,
            queries=np.array(points, dtype=np.float64).reshape(-1, 3) if points else None,
            grid_size=grid_size,
            grid_query_frame=int(grid_frame),
        )
        report(0.05, f"tracking {len(queries)} points over {source.num_frames} frames")
        tracks, occluded = predictor(source, queries=queries)
        report(0.8, "drawing the tracks")
        folder = self.workdir / "runs" / uuid.uuid4().hex[:12]
        stem = Path(info.path).stem
        # Small videos are drawn enlarged, as on the page, so markers and trails stay readable.
        k = info.display_scale
        frames = (enlarge(frame, k) for frame in source.iter_frames())
        video = write_tracks_video(
            folder / f"{stem}.tracks.mp4", frames, (tracks + 0.5) * k - 0.5, occluded, source.fps
        )
        npz = save_tracks(folder / f"{stem}.tracks.npz", tracks, occluded, queries, source.size, source.fps)
        visible = float((~occluded).float().mean()) if occluded.numel() else 0.0
        message = (
            f"Tracked {len(queries)} points over {source.num_frames} frames with {checkpoint} "
            f"({predictor.options.mode} mode); visible {100 * visible:.0f} % of the time."
        )
        if self.checkpoints[checkpoint] is None:
            message += " These are random weights: the tracks mean nothing."
        report(1.0, "done")
        return RunResult(video, npz, message)


def example_video(folder: str | Path) -> Path:
    """A short clip to try the demo on, written into ``folder``: a photograph under a moving camera
    with photo cut-outs moving over it (the real-photo benchmark's first video, longer)."""
    from gmrw.data.photo_videos import photo_video
    from gmrw.video import write_video

    clip = photo_video(0, num_frames=24, size=256)
    return write_video(Path(folder) / "example.mp4", clip.video.numpy(), fps=12)
