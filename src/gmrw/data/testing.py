"""Tiny datasets in the real on-disk formats, for tests, benchmarks and smoke runs.

Everything here writes small files into a folder you give it; nothing is downloaded.

* :func:`write_tiny_kinetics` — ``root/{train,val}/<class>/<id>.mp4`` (H.264/MPEG-4 via imageio-ffmpeg),
  optionally with a truncated and a zero-byte video planted in ``train/``.
* :func:`write_tiny_movi_e` — a TFDS directory ``root/movi_e/256x256/1.0.0/`` built by a minimal
  TFDS builder that declares MOVi-E's feature names, dtypes and layout (at a small size).
* :func:`write_tapvid_pickle` — ``tapvid_davis.pkl`` (dict), ``tapvid_rgb_stacking.pkl`` (list) or a
  TAP-Vid-Kinetics shard ``0000_of_0010.pkl`` (list, JPEG-encoded frames).
* :func:`write_kubric_tsv` — the reference's ``validation_data.tsv`` (base64 float32/bool arrays).
"""

from __future__ import annotations

import base64
import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np


def textured_video(
    num_frames: int, height: int, width: int, seed: int = 0, motion: tuple[int, int] = (1, 2)
) -> np.ndarray:
    """A smooth random texture whose content moves by ``motion`` = (d_row, d_col) integer pixels
    per frame (so its true optical flow is exactly that): (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    dr, dc = int(motion[0]), int(motion[1])
    pad_r, pad_c = abs(dr) * num_frames + 8, abs(dc) * num_frames + 8
    big_h, big_w = height + 2 * pad_r, width + 2 * pad_c
    noise = rng.random((big_h // 4 + 2, big_w // 4 + 2, 3))
    # Nearest upsampling then a box blur: blobs a few pixels wide, which video codecs keep.
    tex = np.kron(noise, np.ones((4, 4, 1)))[:big_h, :big_w]
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        tex = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, tex)
    tex = (tex - tex.min()) / max(tex.max() - tex.min(), 1e-6)
    frames = []
    for t in range(num_frames):
        # Frame t shows the texture shifted by t·motion: content at p in frame t is at p + motion in t+1.
        r0, c0 = pad_r - dr * t, pad_c - dc * t
        frames.append(tex[r0 : r0 + height, c0 : c0 + width])
    return (np.stack(frames) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------------- Kinetics


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> Path:
    """Write (T, H, W, 3) uint8 frames as an mp4 (even H and W required by yuv420p)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(
        str(path),
        fps=fps,
        codec=codec,
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-pix_fmt", "yuv420p"],
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()
    return path


def write_tiny_kinetics(
    root: str | os.PathLike,
    splits: tuple[str, ...] = ("train", "val"),
    classes: tuple[str, ...] = ("abseiling", "playing cello"),
    videos_per_class: int = 2,
    num_frames: int = 30,
    size: tuple[int, int] = (48, 64),
    fps: int = 25,
    bad_files: bool = True,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Write a Kinetics-700-2020-style folder; returns ``{"good": [...], "bad": [...]}``.

    With ``bad_files`` two broken videos are planted in the first split: a truncated mp4
    (first 600 bytes of a valid one, so the container header is cut) and a zero-byte file.
    One video per class is short (a third of ``num_frames``) so that frame-gap clamping is exercised.
    """
    root = Path(root)
    good: list[Path] = []
    bad: list[Path] = []
    k = 0
    for split in splits:
        for ci, cls in enumerate(classes):
            for v in range(videos_per_class):
                n = num_frames if v % 2 == 0 else max(2, num_frames // 3)
                frames = textured_video(n, size[0], size[1], seed=seed + k)
                good.append(write_mp4(root / split / cls / f"vid{ci}{v:02d}_000000_000010.mp4", frames, fps))
                k += 1
    if bad_files and splits:
        first = root / splits[0] / classes[0]
        data = good[0].read_bytes()
        truncated = first / "truncated_000000_000010.mp4"
        truncated.write_bytes(data[:600])
        empty = first / "empty_000000_000010.mp4"
        empty.write_bytes(b"")
        bad += [truncated, empty]
    return {"good": good, "bad": bad}


# --------------------------------------------------------------------------------------- MOVi-E

#: Flow ranges written into the tiny MOVi-E metadata (min, max), as Kubric stores them.
TINY_FORWARD_FLOW_RANGE = (-6.0, 10.0)
TINY_BACKWARD_FLOW_RANGE = (-10.0, 6.0)
#: The true (constant) forward flow of the tiny videos in Kubric's (d_row, d_col) order.
TINY_FORWARD_FLOW_ROWCOL = (1.0, 2.0)


def _encode_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.round((values - lo) / (hi - lo) * 65535).clip(0, 65535).astype(np.uint16)


def _movi_e_builder_class(num_frames: int, height: int, width: int):
    """A TFDS builder named ``movi_e`` with config ``256x256`` declaring MOVi-E's features at (s, h, w).

    Only a subset of MOVi-E's features is declared (what our readers and tapnet's point-tracking
    reader use), with the real names, dtypes and per-frame layout.
    """
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    s, h, w = num_frames, height, width

    class MoviE(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "movi_e"
        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="256x256", description="tiny test copy")]
        # Nothing to download; also keeps TFDS from looking for a checksums file next to this
        # module (which needs the optional importlib_resources package).
        url_infos: dict = {}

        def __init__(self, *args, examples=None, **kwargs):
            self._examples = examples or {}
            super().__init__(*args, **kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="Tiny stand-in for movi_e/256x256 (same feature names, dtypes and layout).",
                features=tfds.features.FeaturesDict(
                    {
                        "metadata": {
                            "video_name": tfds.features.Text(),
                            "width": tf.int32,
                            "height": tf.int32,
                            "num_frames": tf.int32,
                            "num_instances": tf.uint16,
                            "depth_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
                            "forward_flow_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
                            "backward_flow_range": tfds.features.Tensor(shape=(2,), dtype=tf.float32),
                        },
                        "instances": tfds.features.Sequence(
                            {
                                "bboxes_3d": tfds.features.Tensor(shape=(s, 8, 3), dtype=tf.float32),
                                "quaternions": tfds.features.Tensor(shape=(s, 4), dtype=tf.float32),
                            }
                        ),
                        "camera": {
                            "focal_length": tf.float32,
                            "sensor_width": tf.float32,
                            "field_of_view": tf.float32,
                            "positions": tfds.features.Tensor(shape=(s, 3), dtype=tf.float32),
                            "quaternions": tfds.features.Tensor(shape=(s, 4), dtype=tf.float32),
                        },
                        "video": tfds.features.Video(shape=(s, h, w, 3)),
                        "segmentations": tfds.features.Sequence(
                            tfds.features.Image(shape=(h, w, 1), dtype=tf.uint8), length=s
                        ),
                        "forward_flow": tfds.features.Sequence(
                            tfds.features.Tensor(shape=(h, w, 2), dtype=tf.uint16), length=s
                        ),
                        "backward_flow": tfds.features.Sequence(
                            tfds.features.Tensor(shape=(h, w, 2), dtype=tf.uint16), length=s
                        ),
                        "depth": tfds.features.Sequence(
                            tfds.features.Image(shape=(h, w, 1), dtype=tf.uint16), length=s
                        ),
                        "normal": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
                        "object_coordinates": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
                    }
                ),
                homepage="https://github.com/google-research/kubric",
            )

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(items) for name, items in self._examples.items()}

        def _generate_examples(self, items):
            yield from items

    return MoviE


def _tiny_movi_e_example(name: str, num_frames: int, height: int, width: int, seed: int) -> dict:
    s, h, w = num_frames, height, width
    video = textured_video(s, h, w, seed=seed, motion=TINY_FORWARD_FLOW_ROWCOL)
    fwd = np.empty((s, h, w, 2), np.float32)
    fwd[..., 0], fwd[..., 1] = TINY_FORWARD_FLOW_ROWCOL
    # Kubric stores backward flow at t as the motion t-1 → t (time direction kept, kubric issue #152),
    # so for this constant motion it equals the forward flow.
    bwd = fwd.copy()
    rng = np.random.default_rng(seed)
    return {
        "metadata": {
            "video_name": name,
            "width": w,
            "height": h,
            "num_frames": s,
            "num_instances": 1,
            "depth_range": np.array([1.0, 20.0], np.float32),
            "forward_flow_range": np.array(TINY_FORWARD_FLOW_RANGE, np.float32),
            "backward_flow_range": np.array(TINY_BACKWARD_FLOW_RANGE, np.float32),
        },
        "instances": [
            {
                "bboxes_3d": rng.normal(size=(s, 8, 3)).astype(np.float32),
                "quaternions": np.tile(np.array([1, 0, 0, 0], np.float32), (s, 1)),
            }
        ],
        "camera": {
            "focal_length": 35.0,
            "sensor_width": 32.0,
            "field_of_view": 0.857,
            "positions": np.tile(np.array([0, -10, 5], np.float32), (s, 1)),
            "quaternions": np.tile(np.array([1, 0, 0, 0], np.float32), (s, 1)),
        },
        "video": video,
        "segmentations": (rng.random((s, h, w, 1)) > 0.7).astype(np.uint8),
        "forward_flow": _encode_range(fwd, *TINY_FORWARD_FLOW_RANGE),
        "backward_flow": _encode_range(bwd, *TINY_BACKWARD_FLOW_RANGE),
        "depth": rng.integers(0, 65535, (s, h, w, 1), dtype=np.uint16),
        "normal": rng.integers(0, 65535, (s, h, w, 3), dtype=np.uint16),
        "object_coordinates": rng.integers(0, 65535, (s, h, w, 3), dtype=np.uint16),
    }


def write_tiny_movi_e(
    root: str | os.PathLike,
    num_train: int = 3,
    num_validation: int = 2,
    num_frames: int = 6,
    size: tuple[int, int] = (32, 32),
    seed: int = 0,
) -> Path:
    """Build ``root/movi_e/256x256/1.0.0`` (TFDS) from generated examples; returns that version folder.

    The config keeps the real name ``256x256`` whatever ``size`` is, as readers look it up by name.
    Each video is a texture translating by :data:`TINY_FORWARD_FLOW_ROWCOL` px/frame; ``forward_flow`` stores exactly
    that motion as (d_row, d_col) in uint16 over :data:`TINY_FORWARD_FLOW_RANGE`.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets as tfds

    h, w = size
    builder_cls = _movi_e_builder_class(num_frames, h, w)
    examples = {
        "train": [
            (f"train_{i}", _tiny_movi_e_example(f"train_{i}", num_frames, h, w, seed + i))
            for i in range(num_train)
        ],
        "validation": [
            (f"val_{i}", _tiny_movi_e_example(f"val_{i}", num_frames, h, w, seed + 1000 + i))
            for i in range(num_validation)
        ],
    }
    builder = builder_cls(data_dir=str(root), config="256x256", examples=examples)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    return Path(builder.data_dir)


# --------------------------------------------------------------------------------------- TAP-Vid


def tapvid_tracks(num_points: int, num_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth tracks in [0, 1] (x, y) (N, T, 2) float32 and occlusion (N, T) bool.

    Point 0 is occluded in its first two frames (a late first-visible frame), point 1 is never
    visible (so ``first`` sampling must drop it).
    """
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.1, 0.9, (num_points, 1, 2))
    vel = rng.uniform(-0.01, 0.01, (num_points, 1, 2))
    points = (start + vel * np.arange(num_frames)[None, :, None]).clip(0, 1).astype(np.float32)
    occluded = rng.random((num_points, num_frames)) < 0.2
    if num_points > 0:
        occluded[0, :2] = True
        occluded[0, 2:] = False
    if num_points > 1:
        occluded[1] = True
    return points, occluded


def _jpeg_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tapvid_pickle(
    path: str | os.PathLike,
    kind: str = "davis",
    num_videos: int = 3,
    num_frames: int = 8,
    size: tuple[int, int] = (40, 48),
    num_points: int = 6,
    seed: int = 0,
) -> Path:
    """Write a TAP-Vid pickle: ``kind`` is ``davis`` (dict name → example, uint8 video),
    ``rgb_stacking`` (list, uint8 video) or ``kinetics`` (list, JPEG-bytes frames; name the file
    ``NNNN_of_0010.pkl``). Examples hold ``video``, ``points`` (N, T, 2) in [0, 1] and ``occluded``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    examples = []
    for v in range(num_videos):
        video = textured_video(num_frames, size[0], size[1], seed=seed + v)
        points, occluded = tapvid_tracks(num_points, num_frames, seed=seed + v)
        example = {"points": points, "occluded": occluded}
        if kind == "kinetics":
            example["video"] = [_jpeg_bytes(f) for f in video]
            example["video_id"] = f"yt{seed + v:05d}"
        else:
            example["video"] = video
        examples.append(example)
    if kind == "davis":
        data: object = {f"video{v}": ex for v, ex in enumerate(examples)}
    elif kind in ("rgb_stacking", "kinetics"):
        data = examples
    else:
        raise ValueError(f"unknown TAP-Vid pickle kind {kind!r}: davis, rgb_stacking or kinetics")
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def write_kubric_tsv(
    path: str | os.PathLike,
    num_videos: int = 2,
    num_frames: int = 6,
    size: int = 32,
    num_points: int = 8,
    seed: int = 0,
) -> Path:
    """Write the reference's ``validation_data.tsv`` layout: columns id, video, query_points,
    target_points, occluded; arrays base64 of float32 video (1, T, S, S, 3) in [-1, 1], float32
    queries (1, N, 3) (t, y, x) px, float32 targets (1, N, T, 2) (x, y) px, bool occlusion (1, N, T)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def b64(a: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")

    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        for i in range(num_videos):
            video = textured_video(num_frames, size, size, seed=seed + i).astype(np.float32) / 127.5 - 1.0
            points, occluded = tapvid_tracks(num_points, num_frames, seed=seed + i)
            occluded[1] = False  # every Kubric query is visible at its own frame
            targets = points * size
            qt = np.array([np.flatnonzero(~occ)[0] for occ in occluded])
            queries = np.stack(
                [qt, targets[np.arange(num_points), qt, 1], targets[np.arange(num_points), qt, 0]], -1
            )
            writer.writerow(
                [
                    str(i),
                    b64(video[None]),
                    b64(queries[None].astype(np.float32)),
                    b64(targets[None].astype(np.float32)),
                    b64(occluded[None].astype(bool)),
                ]
            )
    return path
