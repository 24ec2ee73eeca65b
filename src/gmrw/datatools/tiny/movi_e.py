"""A tiny MOVi-E TFDS folder, ``root/movi_e/256x256/1.0.0/``, with MOVi-E's complete feature spec
(names, dtypes, encodings, at a small size), rendered from scenes of known geometry
(:mod:`gmrw.datatools.tiny.cuboids`) so that depth, segmentation, object coordinates, normals, flows,
camera and object poses agree."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gmrw.datatools.tiny.cuboids import CuboidScene, sliding_cube_scene, translating_camera_scene
from gmrw.datatools.tiny.videos import textured_video

#: Flow ranges written into the tiny MOVi-E training metadata (min, max), as Kubric stores them.
TINY_FORWARD_FLOW_RANGE = (-6.0, 10.0)
TINY_BACKWARD_FLOW_RANGE = (-10.0, 6.0)
#: The true (constant) forward flow of the tiny training videos in Kubric's (d_row, d_col) order.
TINY_FORWARD_FLOW_ROWCOL = (1.0, 2.0)

_CATEGORIES = [
    "Action Figures", "Bag", "Board Games", "Bottles and Cans and Cups", "Camera", "Car Seat",
    "Consumer Goods", "Hat", "Headphones", "Keyboard", "Legos", "Media Cases", "Mouse", "None", "Shoe",
    "Stuffed Toys", "Toys",
]  # fmt: skip


def _encode_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.round((values - lo) / (hi - lo) * 65535).clip(0, 65535).astype(np.uint16)


def _movi_e_features(num_frames: int, height: int, width: int):
    """MOVi-E's complete TFDS feature spec (kubric challenges/movi/movi_e.py) at (s, h, w)."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    s, h, w = num_frames, height, width

    def tensor(*shape, dtype=tf.float32):
        return tfds.features.Tensor(shape=shape, dtype=dtype)

    instance = {
        "mass": tf.float32,
        "friction": tf.float32,
        "restitution": tf.float32,
        "positions": tensor(s, 3),
        "quaternions": tensor(s, 4),
        "velocities": tensor(s, 3),
        "angular_velocities": tensor(s, 3),
        "bboxes_3d": tensor(s, 8, 3),
        "image_positions": tensor(s, 2),
        "bboxes": tfds.features.Sequence(tfds.features.BBoxFeature()),
        "bbox_frames": tfds.features.Sequence(tensor(dtype=tf.int32)),
        "visibility": tensor(s, dtype=tf.uint16),
        "asset_id": tfds.features.Text(),
        "category": tfds.features.ClassLabel(names=_CATEGORIES),
        "scale": tf.float32,
        "is_dynamic": tf.bool,
    }
    collision = {
        "instances": tensor(2, dtype=tf.uint16),
        "frame": tf.int32,
        "force": tf.float32,
        "position": tensor(3),
        "image_position": tensor(2),
        "contact_normal": tensor(3),
    }
    return tfds.features.FeaturesDict(
        {
            "metadata": {
                "video_name": tfds.features.Text(),
                "width": tf.int32,
                "height": tf.int32,
                "num_frames": tf.int32,
                "num_instances": tf.uint16,
                "depth_range": tensor(2),
                "forward_flow_range": tensor(2),
                "backward_flow_range": tensor(2),
            },
            "background": tfds.features.Text(),
            "instances": tfds.features.Sequence(feature=instance),
            "camera": {
                "focal_length": tf.float32,
                "sensor_width": tf.float32,
                "field_of_view": tf.float32,
                "positions": tensor(s, 3),
                "quaternions": tensor(s, 4),
            },
            "events": {"collisions": tfds.features.Sequence(collision)},
            "video": tfds.features.Video(shape=(s, h, w, 3)),
            "segmentations": tfds.features.Sequence(
                tfds.features.Image(shape=(h, w, 1), dtype=tf.uint8), length=s
            ),
            "forward_flow": tfds.features.Sequence(tensor(h, w, 2, dtype=tf.uint16), length=s),
            "backward_flow": tfds.features.Sequence(tensor(h, w, 2, dtype=tf.uint16), length=s),
            "depth": tfds.features.Sequence(tfds.features.Image(shape=(h, w, 1), dtype=tf.uint16), length=s),
            "normal": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
            "object_coordinates": tfds.features.Video(shape=(s, h, w, 3), dtype=tf.uint16),
        }
    )


def _movi_e_builder_class(num_frames: int, height: int, width: int):
    """A TFDS builder named ``movi_e`` with config ``256x256`` declaring MOVi-E's features at (s, h, w)."""
    import tensorflow_datasets as tfds

    features = _movi_e_features(num_frames, height, width)

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
                description="Tiny stand-in for movi_e/256x256 (same features, dtypes and layout).",
                features=features,
                homepage="https://github.com/google-research/kubric",
            )

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(items) for name, items in self._examples.items()}

        def _generate_examples(self, items):
            yield from items

    return MoviE


def _instance_record(scene: CuboidScene, k: int, seg: np.ndarray) -> dict:
    """MOVi-E's per-instance features for cuboid ``k`` of ``scene`` (segment id k + 1)."""
    box = scene.cuboids[k]
    s = scene.num_frames
    visible = [t for t in range(s) if (seg[t] == k + 1).any()]
    bboxes = []
    for t in visible:
        rows, cols = np.nonzero(seg[t] == k + 1)
        bboxes.append(
            [rows.min() / scene.height, cols.min() / scene.width,
             (rows.max() + 1) / scene.height, (cols.max() + 1) / scene.width]
        )  # fmt: skip
    centre_xy = np.stack([scene.project(box.positions[t], t)[0] for t in range(s)])
    image_positions = centre_xy / np.array([scene.width, scene.height])
    velocities = np.gradient(np.asarray(box.positions, np.float64), axis=0)
    return {
        "mass": 1.0,
        "friction": 0.5,
        "restitution": 0.5,
        "positions": np.asarray(box.positions, np.float32),
        "quaternions": np.asarray(box.quaternions, np.float32),
        "velocities": velocities.astype(np.float32),
        "angular_velocities": np.zeros((s, 3), np.float32),
        "bboxes_3d": box.corners().astype(np.float32),
        "image_positions": image_positions.astype(np.float32),
        "bboxes": np.asarray(bboxes, np.float32).reshape(-1, 4),
        "bbox_frames": np.asarray(visible, np.int32),
        "visibility": np.array([(seg[t] == k + 1).sum() for t in range(s)], np.uint16),
        "asset_id": f"cuboid_{k}",
        "category": "Toys",
        "scale": 1.0,
        "is_dynamic": bool(np.ptp(box.positions, axis=0).max() > 0),
    }


def movi_e_example(
    scene: CuboidScene,
    name: str,
    video: np.ndarray | None = None,
    flow_ranges: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> dict:
    """Render ``scene`` into one MOVi-E example (every feature, quantised as Kubric stores it).

    ``video`` replaces the rendered RGB frames (the geometry layers stay the scene's);
    ``flow_ranges`` fixes (forward, backward) ``(min, max)`` instead of the data's own range.
    """
    layers = scene.render()
    s, h, w = scene.num_frames, scene.height, scene.width
    seg = layers["segmentations"]
    depth = layers["depth"]
    depth_range = (float(depth.min()), float(depth.max()))
    ranges = []
    for key, fixed in zip(("forward_flow", "backward_flow"), flow_ranges or (None, None)):
        flow = layers[key]
        ranges.append(fixed if fixed is not None else (float(flow.min()) - 1.0, float(flow.max()) + 1.0))
    return {
        "metadata": {
            "video_name": name,
            "width": w,
            "height": h,
            "num_frames": s,
            "num_instances": len(scene.cuboids),
            "depth_range": np.array(depth_range, np.float32),
            "forward_flow_range": np.array(ranges[0], np.float32),
            "backward_flow_range": np.array(ranges[1], np.float32),
        },
        "background": "tiny_ground_plane",
        "instances": [_instance_record(scene, k, seg) for k in range(len(scene.cuboids))],
        "camera": {
            "focal_length": scene.focal_length,
            "sensor_width": scene.sensor_width,
            "field_of_view": 2 * np.arctan(scene.sensor_width / 2 / scene.focal_length),
            "positions": np.asarray(scene.camera_positions, np.float32),
            "quaternions": np.asarray(scene.camera_quaternions, np.float32),
        },
        "events": {"collisions": []},
        "video": layers["video"] if video is None else video,
        "segmentations": seg[..., None].astype(np.uint8),
        "forward_flow": _encode_range(layers["forward_flow"], *ranges[0]),
        "backward_flow": _encode_range(layers["backward_flow"], *ranges[1]),
        "depth": _encode_range(depth, *depth_range)[..., None],
        "normal": _encode_range(layers["normal"], -1.0, 1.0),
        "object_coordinates": _encode_range(layers["object_coordinates"], 0.0, 1.0),
    }


def _tiny_training_example(name: str, num_frames: int, height: int, width: int, seed: int) -> dict:
    """A textured ground seen by a camera translating so that it moves by exactly
    :data:`TINY_FORWARD_FLOW_ROWCOL` px per frame; the RGB is :func:`textured_video` with that motion."""
    scene = translating_camera_scene(num_frames, height, width, TINY_FORWARD_FLOW_ROWCOL, seed=seed)
    video = textured_video(num_frames, height, width, seed=seed, motion=TINY_FORWARD_FLOW_ROWCOL)
    return movi_e_example(scene, name, video, (TINY_FORWARD_FLOW_RANGE, TINY_BACKWARD_FLOW_RANGE))


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
    Every example carries all of MOVi-E's features, geometrically consistent (see
    :mod:`gmrw.datatools.tiny.cuboids`):

    * ``train``: the ground seen by a camera translating so that the image moves by
      :data:`TINY_FORWARD_FLOW_ROWCOL` px/frame; RGB is :func:`textured_video`; ``forward_flow``
      stores exactly that motion (d_row, d_col) in uint16 over :data:`TINY_FORWARD_FLOW_RANGE`.
    * ``validation``: :func:`~gmrw.datatools.tiny.cuboids.sliding_cube_scene` (seed ``seed + 1000 + i``):
      a tilted camera, a static box and a box sliding across the view, for point-track sampling.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets as tfds

    h, w = size
    builder_cls = _movi_e_builder_class(num_frames, h, w)
    examples = {
        "train": [
            (f"train_{i}", _tiny_training_example(f"train_{i}", num_frames, h, w, seed + i))
            for i in range(num_train)
        ],
        "validation": [
            (f"val_{i}", movi_e_example(sliding_cube_scene(num_frames, h, w, seed + 1000 + i), f"val_{i}"))
            for i in range(num_validation)
        ],
    }
    builder = builder_cls(data_dir=str(root), config="256x256", examples=examples)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    return Path(builder.data_dir)
