"""A real-photo tracking benchmark with exact ground truth: photographs under camera motion, with
photo cut-outs moving on their own and occluding each other.

Each video is a real photograph (one that ships with scikit-image) seen by a camera that pans,
zooms, rotates and tilts (a homography), with 3–5 objects cut from other photographs moving over
it; frames get a light JPEG compression, as video frames do. Rendering uses the same engine as the
training world (:mod:`gmrw.data.scenes`), so tracks and occlusion flags are exact. These
photographs are reserved for evaluation: the training world never uses them.

* :func:`photo_video` renders one video with its TAP-Vid ground truth;
* :class:`PhotoTapVidDataset` serves them as TAP-Vid examples (the validation contract);
* :func:`write_tapvid_pickle` writes them as a ``tapvid_davis``-format pickle, so
  ``gmrw-eval data=tapvid_davis data.path=photos.pkl`` scores any checkpoint on them
  (``gmrw-data photos DIR`` writes it).

Conventions as everywhere: frames ``(T, H, W, 3)`` uint8; queries ``(t, y, x)``, tracks ``(x, y)``
in pixels, pixel centres at integers.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gmrw.data.queries import SceneVideo, scene_ground_truth
from gmrw.data.scenes.scene import Layer, Scene, render, sample_points, to_uint8
from gmrw.data.scenes.world import WorldMotion, jpeg, sample_camera, sample_object_motion, sample_shape

#: Backgrounds: photographs of scenes (gray ones are repeated into three channels).
BACKGROUNDS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle",
    "camera",
    "hubble_deep_field",
    "coins",
)
#: Objects are cut from these (any photograph but the video's background).
OBJECT_SOURCES = BACKGROUNDS + ("immunohistochemistry", "clock", "brick", "gravel")
#: An object's patch is redrawn until its contrast (std of its pixels) reaches this: a flat patch
#: has nothing to track.
MIN_PATCH_STD = 20.0

#: The benchmark's motion, as in TAP-Vid-DAVIS clips: a panning or handheld camera (up to 4 px a
#: frame at 256 px, zooming and rolling a little) and objects up to 6 px a frame.
PHOTO_MOTION = WorldMotion(
    camera_speed=0.016,
    camera_acceleration=0.0008,
    camera_zoom=0.012,
    camera_spin=0.8,
    camera_tilt_rate=3e-5,
    object_speed=0.025,
    object_acceleration=0.002,
    object_zoom=0.015,
    object_spin=3.0,
)


@functools.lru_cache(maxsize=1)
def load_photos() -> dict[str, torch.Tensor]:
    """The photographs above, ``(3, h, w)`` float32 in [0, 255], by name (cached per process)."""
    import skimage.data

    photos = {}
    for name in dict.fromkeys(BACKGROUNDS + OBJECT_SOURCES):
        array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        image = torch.from_numpy(np.ascontiguousarray(array)).float()
        image = image[None].expand(3, -1, -1) if image.ndim == 2 else image[..., :3].permute(2, 0, 1)
        photos[name] = image.contiguous()
    return photos


@dataclass(frozen=True)
class PhotoVideo(SceneVideo):
    """A benchmark video with exact ground truth (:class:`~gmrw.data.queries.SceneVideo`);
    background: the background photo's name."""

    background: str


def photo_scene(rng: np.random.Generator, background: str, size: int, num_frames: int) -> Scene:
    """A scene over photograph ``background`` seen in ``size × size`` frames for ``num_frames``."""
    photos = load_photos()
    photo = photos[background]
    h, w = photo.shape[-2:]
    # The camera needs a square texture around its path: centre-crop the photo to a square and
    # zoom in so the frame stays inside it.
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    texture = photo[:, y0 : y0 + side, x0 : x0 + side].contiguous()
    # Zoomed in so that the frame's diagonal and its path stay inside the photo.
    fit = math.log(1.6 * size / side)
    camera = sample_camera(rng, size, size, side, PHOTO_MOTION, num_frames, (fit, fit + 0.25))
    layers = [Layer(texture, camera)]
    scale = math.exp(camera.log_scale)
    sources = [name for name in OBJECT_SOURCES if name != background]
    for _ in range(int(rng.integers(3, 6))):
        radius_frame = rng.uniform(0.1, 0.25) * size
        radius = radius_frame / scale  # world (background photo) px
        patch_side = int(math.ceil(2.6 * radius)) + 4
        patch = _object_patch(rng, [photos[name] for name in sources], patch_side)
        motion = sample_object_motion(rng, camera, size, size, patch_side, PHOTO_MOTION)
        layers.append(Layer(patch, motion, sample_shape(rng, radius, patch_side)))
    return Scene(size, size, tuple(layers))


def _object_patch(rng: np.random.Generator, sources: list[torch.Tensor], side: int) -> torch.Tensor:
    """A ``side``² patch of a random source photo at roughly its native scale, with some contrast."""
    for _ in range(20):
        source = sources[int(rng.integers(len(sources)))]
        sh, sw = source.shape[-2:]
        crop = min(sh, sw, int(side * rng.uniform(0.8, 1.6)))
        y, x = int(rng.integers(0, sh - crop + 1)), int(rng.integers(0, sw - crop + 1))
        patch = torch.nn.functional.interpolate(
            source[None, :, y : y + crop, x : x + crop],
            size=(side, side),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
        if float(patch.std()) >= MIN_PATCH_STD:
            break
    return patch.contiguous()


def photo_video(
    index: int,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 256,
    num_points: int = 40,
    query_mode: str = "first",
    jpeg_quality: int = 90,
) -> PhotoVideo:
    """Video ``index`` of the benchmark (a pure function of its arguments)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31_337, index]))
    background = BACKGROUNDS[index % len(BACKGROUNDS)]
    scene = photo_scene(rng, background, size, num_frames)
    times = list(range(num_frames))
    frames = render(scene, times)
    if jpeg_quality < 100:
        frames = torch.stack([jpeg(frame, jpeg_quality) for frame in frames])
    layers, uv = sample_points(scene, rng, num_points, times, object_fraction=0.5, margin=2.0)
    truth = scene_ground_truth(scene, layers, uv, times, query_mode)
    return PhotoVideo(video=to_uint8(frames), scene=scene, background=background, **truth)


class PhotoTapVidDataset(Dataset):
    """``num_videos`` benchmark videos as TAP-Vid examples (docs/CONTRACTS.md), made on access."""

    def __init__(
        self,
        num_videos: int = 16,
        num_frames: int = 16,
        size: int = 256,
        num_points: int = 40,
        query_mode: str = "first",
        seed: int = 0,
    ):
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.num_videos, self.num_frames, self.size = int(num_videos), int(num_frames), int(size)
        self.num_points, self.query_mode, self.seed = int(num_points), query_mode, int(seed)

    def __len__(self) -> int:
        return self.num_videos

    def video(self, index: int) -> PhotoVideo:
        return photo_video(index, self.seed, self.num_frames, self.size, self.num_points, self.query_mode)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        video = self.video(index)
        return video.example(f"photos_{self.seed}_{index:03d}_{video.background}")


def write_tapvid_pickle(
    path: str | Path,
    num_videos: int = 16,
    num_frames: int = 16,
    size: int = 256,
    num_points: int = 40,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write the benchmark as a ``tapvid_davis``-format pickle (name → {video (T, H, W, 3) uint8,
    points (N, T, 2) (x, y) / (W, H), occluded (N, T)}), atomically; returns the path.

    The points are every track sampled for the video (not the queries): the reader samples
    ``first`` or ``strided`` queries from them as for TAP-Vid-DAVIS.
    """
    path = Path(path)
    indices: Sequence[int] = range(num_videos)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="rendering photo videos", unit="video")
    records = {}
    for index in indices:
        video = photo_video(index, seed, num_frames, size, num_points, "first")
        scale = np.array([size, size], dtype=np.float32)
        records[f"photos_{seed}_{index:03d}_{video.background}"] = {
            "video": video.video.numpy(),
            "points": video.target_points.numpy() / scale,
            "occluded": video.occluded.numpy(),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as handle:
        pickle.dump(records, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path
