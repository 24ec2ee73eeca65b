"""TAP-Vid-Kubric: tracks sampled from MOVi-E geometry as Kubric's point-tracking reader does.

The validation split of the tiny MOVi-E is rendered from scenes whose geometry the test knows
(:mod:`gmrw.datatools.tiny.cuboids`), so sampled tracks are checked against the true projections and the
true visibility of the surface points they follow.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import torch

from gmrw.data.loaders import tapvid_loader
from gmrw.data.modules import TapVidDataModule
from gmrw.data.readers.kubric_tracks import (
    TRACK_FEATURES,
    allocate_tracks,
    camera_matrices,
    faces_away,
    occluded_by_depth_or_segment,
    project,
    sample_kubric_tracks,
    unproject,
)
from gmrw.data.readers.movi_e import MoviEReader
from gmrw.data.tapvid import TapVidDataset
from gmrw.datatools import tiny
from gmrw.datatools.tiny.cuboids import sliding_cube_scene, yaw_pitch_quaternion

FRAMES, SIZE = 12, 64


@pytest.fixture(scope="module")
def movi_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    tiny.write_tiny_movi_e(root, num_train=1, num_validation=2, num_frames=FRAMES, size=(SIZE, SIZE))
    return root


def _scene_of(root, index):
    """The scene video ``index`` of the validation split was rendered from (TFDS shuffles records)."""
    name = MoviEReader(root, "validation").example(index, ("metadata",))["metadata"]["video_name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return sliding_cube_scene(FRAMES, SIZE, SIZE, seed=1000 + int(name.split("_")[1]))


# ------------------------------------------------------------------------------ hand-computed pieces


def test_camera_projection_by_hand():
    # 35 mm lens on a 32 mm sensor, 64 px wide: 70 px per unit of x / depth.
    positions = np.array([[0.0, 0.0, 10.0]] * 2)
    quats = np.stack([[1.0, 0, 0, 0], yaw_pitch_quaternion(np.pi / 2)])  # straight down; turned 90°
    intrinsics, matrix_world = camera_matrices(35.0, 32.0, positions, quats, (64, 64))
    point = np.array([[[1.0, 2.0, 0.0]]] * 2)
    xy, in_front = project(point, intrinsics, matrix_world)
    # Looking down: image right is world +x, image down is world −y.
    np.testing.assert_allclose(xy[0, 0] * 64, [32 + 70 * 1 / 10, 32 - 70 * 2 / 10])
    # Turned 90° about z: image right is world +y, image down is world +x.
    np.testing.assert_allclose(xy[1, 0] * 64, [32 + 70 * 2 / 10, 32 + 70 * 1 / 10])
    assert in_front.all()
    behind = project(np.array([[[0.0, 0.0, 20.0]]]), intrinsics[:1], matrix_world[:1])[1]
    assert not behind.any()
    # Unprojecting a pixel with its depth and projecting again lands on the pixel's centre.
    depth = np.full((64, 64), 12.0)
    world = unproject(np.array([[17, 38]]), intrinsics[1], matrix_world[1], depth)
    np.testing.assert_allclose(np.linalg.norm(world - positions[1]), 12.0)
    back = project(world[None], intrinsics[1:], matrix_world[1:])[0][0, 0] * 64
    np.testing.assert_allclose(back, [38.5, 17.5], atol=1e-9)


def test_allocation_by_hand():
    # Visited from the fewest grid pixels up: ids 3 (0), 1 (5), 4 (12), 2 (37), 0 (100).
    # id 3: min(round(20/5)=4, cap 0) = 0; id 1: min(5, round(0.5)=0) = 0; id 4: min(round(6.67)=7,
    # round(1.2)=1) = 1; id 2: min(round(19/2=9.5)=10, round(3.7)=4) = 4; id 0: min(15, 10) = 10.
    got = allocate_tracks(np.array([100, 5, 37, 0, 12]), max_seg_id=8, max_sampled_frac=0.1, total=20)
    np.testing.assert_array_equal(got, [10, 0, 4, 0, 1, 0, 0, 0])
    # Plenty of pixels everywhere: even shares. id 2: round(256/3) = 85; id 1: round(171/2 = 85.5) = 86
    # (half to even); id 0: the 85 left.
    got = allocate_tracks(np.array([5000, 4000, 3000]), max_seg_id=3, max_sampled_frac=0.1, total=256)
    np.testing.assert_array_equal(got, [85, 86, 85])
    with pytest.raises(ValueError, match="max_seg_id"):
        allocate_tracks(np.ones(30, int), max_seg_id=25, max_sampled_frac=0.1, total=10)


def test_depth_and_segment_occlusion_rule():
    depth = np.full((1, 6, 6), 10.0)
    seg = np.zeros((1, 6, 6), int)
    xy = np.array([[[2.5, 2.5]]])  # the centre of pixel (2, 2): neighbours (2..3, 2..3)
    at = np.array([[10.0]])
    assert not occluded_by_depth_or_segment(depth, seg, xy, at, 0)[0, 0]
    depth[0, 2:4, 2:4] = 5.0  # something nearer covers all four neighbours
    assert occluded_by_depth_or_segment(depth, seg, xy, at, 0)[0, 0]
    depth[0, 3, 3] = 10.0  # one neighbour still sees as far as the point: counted visible
    assert not occluded_by_depth_or_segment(depth, seg, xy, at, 0)[0, 0]
    seg[0, 2:4, 2:4] = 3  # none of the four pixels is on the point's segment
    assert occluded_by_depth_or_segment(depth, seg, xy, at, 0)[0, 0]
    assert not occluded_by_depth_or_segment(depth, seg, xy, at, 3)[0, 0]


def test_faces_away_by_hand():
    flip = np.diag([1.0, -1.0, -1.0])  # half a turn about x: the top face now faces the ground
    rotations = np.stack([np.eye(3), flip])
    camera = np.array([[0.0, 0.0, 10.0]] * 2)
    world = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    up = np.array([[0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(faces_away(up, world, camera, rotations, np.array([0])), [[False, True]])
    # Queried where it already faces away (a mesh defect, says Kubric): never flagged.
    down = np.array([[0.0, 0.0, -1.0]])
    np.testing.assert_array_equal(faces_away(down, world, camera, rotations, np.array([1])), [[False, False]])


# ------------------------------------------------------------------------------ against the scene


def _truth(scene, query):
    """The surface point seen at a query (t, y, x) and its true image position / visibility per frame."""
    t = int(query[0])
    hit = scene.cast(t, np.array([[query[2], query[1]]]))
    seg = int(hit["segment"][0])
    src = hit["point"][0] if seg == 0 else hit["unit"][0]
    world = scene.surface_to_world(seg, src, np.arange(scene.num_frames))
    xy = np.stack([scene.project(world[f], f)[0] for f in range(scene.num_frames)])
    visible = np.array([scene.visible(seg, src, f) for f in range(scene.num_frames)])
    # Clear-cut frames: the rays around the projection all see one segment, away from the border.
    clear = np.zeros(scene.num_frames, bool)
    offsets = np.array([[0.0, 0.0], [1.5, 1.5], [-1.5, 1.5], [1.5, -1.5], [-1.5, -1.5]])
    for f in range(scene.num_frames):
        inside = (xy[f] > 1.5).all() and (xy[f] < np.array([scene.width, scene.height]) - 1.5).all()
        outside = (xy[f] < -1.5).any() or (xy[f] > np.array([scene.width, scene.height]) + 1.5).any()
        if outside:
            clear[f] = True
        elif inside:
            clear[f] = len(np.unique(scene.cast(f, xy[f] + offsets)["segment"])) == 1
    return seg, xy, visible, clear


@pytest.mark.parametrize("index", [0, 1])
def test_tracks_follow_the_scene_and_occlusion_flips(movi_root, index):
    scene = _scene_of(movi_root, index)
    example = MoviEReader(movi_root, "validation").example(index, TRACK_FEATURES)
    # A larger share per object than tapnet's 10% so that both boxes carry many tracks.
    out = sample_kubric_tracks(example, 96, np.random.default_rng(index), max_sampled_frac=0.5)
    queries, tracks, occluded = out["query_points"], out["target_points"], out["occluded"]
    assert queries.shape == (96, 3) and tracks.shape == (96, FRAMES, 2) and occluded.shape == (96, FRAMES)
    segments, checked, flips = [], 0, 0
    for n in range(len(queries)):
        t = int(queries[n, 0])
        # Queries are pixel centres on a stride-4 grid, visible at their own frame, on their track.
        assert (queries[n, 1:] % 1 == 0.5).all()
        assert not occluded[n, t]
        np.testing.assert_allclose(tracks[n, t], queries[n, [2, 1]], atol=1e-3)
        seg, xy, visible, clear = _truth(scene, queries[n])
        segments.append(seg)
        # Positions: the true projection of the tracked surface point at every frame.
        np.testing.assert_allclose(tracks[n], xy, atol=0.01)
        # Occlusion: the truth wherever it is clear-cut (Kubric looks at the 4 pixels around a point).
        np.testing.assert_array_equal(
            occluded[n][clear], ~visible[clear], err_msg=f"track {n} (segment {seg})"
        )
        checked += clear.sum()
        vis = ~occluded[n]
        if (
            vis[:t].any()
            and occluded[n, t + 1 :].any()
            and vis[t + 1 :][occluded[n, t + 1 :].argmax() :].any()
        ):
            flips += 1
    assert set(segments) == {0, 1, 2}, "tracks on the ground and on both boxes"
    assert checked > 0.7 * occluded.size  # most frames are clear-cut
    assert occluded.any() and (~occluded).any()
    # The sliding box covers ground points and later uncovers them: some tracks flip both ways.
    ground_covered = [
        n for n in range(len(queries)) if segments[n] == 0 and occluded[n].any() and not occluded[n, 0]
    ]
    assert ground_covered, "no ground track was covered by the sliding box"
    assert flips > 0, "no track became visible again after an occlusion"


def test_dataset_examples_are_deterministic_and_follow_the_contract(movi_root):
    ds = TapVidDataset("tapvid_kubric", movi_root, resolution=None, num_points=40, seed=3)
    assert len(ds) == 2 and ds.names == ["movi_e_validation_0000", "movi_e_validation_0001"]
    ex = ds[1]
    assert ex["video"].shape == (FRAMES, SIZE, SIZE, 3) and ex["video"].dtype == torch.uint8
    assert ex["query_points"].shape == (40, 3) and ex["query_points"].dtype == torch.float32
    assert ex["target_points"].shape == (40, FRAMES, 2) and ex["target_points"].dtype == torch.float32
    assert ex["occluded"].shape == (40, FRAMES) and ex["occluded"].dtype == torch.bool
    assert ex["name"] == "movi_e_validation_0001"
    # All queries come from one random grid: frames t0, t0 + 4, …; rows y0 + 4k (+0.5).
    assert len(set(ex["query_points"][:, 0].long().remainder(4).tolist())) == 1
    assert len(set((ex["query_points"][:, 1] - 0.5).long().remainder(4).tolist())) == 1
    again = TapVidDataset("tapvid_kubric", movi_root, resolution=None, num_points=40, seed=3)[1]
    for key in ("query_points", "target_points", "occluded"):
        assert torch.equal(ex[key], again[key])
    other = TapVidDataset("tapvid_kubric", movi_root, resolution=None, num_points=40, seed=4)[1]
    assert not torch.equal(ex["query_points"], other["query_points"])
    # Another resolution scales the coordinates with the video.
    big = TapVidDataset("tapvid_kubric", movi_root, resolution=(128, 96), num_points=40, seed=3)[1]
    assert big["video"].shape == (FRAMES, 128, 96, 3)
    torch.testing.assert_close(big["target_points"], ex["target_points"] * torch.tensor([1.5, 2.0]))
    torch.testing.assert_close(
        big["query_points"][:, 1:], ex["query_points"][:, 1:] * torch.tensor([2.0, 1.5])
    )


def test_datamodule_serves_tapvid_kubric_over_ranks(movi_root):
    dm = TapVidDataModule(format="tapvid_kubric", path=str(movi_root), resolution=[SIZE, SIZE], num_points=32)
    dm.setup("test")
    batches = [list(tapvid_loader(dm.dataset, rank=r, world_size=2)) for r in range(2)]
    assert [[b["name"][0] for b in rank] for rank in batches] == [
        ["movi_e_validation_0000"],
        ["movi_e_validation_0001"],
    ]
    b = batches[0][0]
    assert b["video"].shape == (1, FRAMES, SIZE, SIZE, 3) and b["query_points"].shape == (1, 32, 3)
    assert b["target_points"].shape == (1, 32, FRAMES, 2) and b["occluded"].shape == (1, 32, FRAMES)


@pytest.mark.slow
def test_movi_e_size_gives_tapnets_256_tracks(tmp_path):
    """At MOVi-E's real size (24 frames of 256×256) a video gives exactly 256 tracks."""
    tiny.write_tiny_movi_e(tmp_path, num_train=1, num_validation=1, num_frames=24, size=(256, 256))
    ex = TapVidDataset("tapvid_kubric", tmp_path)[0]
    assert ex["video"].shape == (24, 256, 256, 3)
    assert ex["query_points"].shape == (256, 3) and ex["target_points"].shape == (256, 24, 2)
    t = ex["query_points"][:, 0].long()
    assert not ex["occluded"][torch.arange(256), t].any()
    torch.testing.assert_close(
        ex["target_points"][torch.arange(256), t], ex["query_points"][:, [2, 1]], atol=1e-3, rtol=0
    )


class _Draws:
    """Stands in for a numpy Generator: the grid offsets first, then one draw per segment."""

    def __init__(self, offsets, seed):
        self.offsets, self.generator = list(offsets), np.random.default_rng(seed)

    def integers(self, low, high, size):
        if self.offsets:
            offsets, self.offsets = self.offsets, []
            return np.array(offsets)
        return self.generator.integers(low, high, size=size)


def _kubric_tracks(kubric, example, offsets, seed, num_points):
    """Kubric's ``add_tracks`` (whole frame) on ``example``, its random ops fed the same draws as ours."""
    import tensorflow as tf

    draws, grid = _Draws([], seed), iter(offsets)

    def multinomial(logits, num):
        picks = draws.integers(0, int(logits.shape[1]), size=int(num)) if int(num) else []
        return tf.constant(np.asarray(picks, np.int64)[None])

    data = {
        k: tf.constant(example[k])
        for k in ("video", "object_coordinates", "depth", "segmentations", "normal")
    }
    data["metadata"] = {"depth_range": tf.constant(example["metadata"]["depth_range"])}
    data["instances"] = {k: tf.constant(example["instances"][k]) for k in ("bboxes_3d", "quaternions")}
    data["camera"] = {k: tf.constant(v) for k, v in example["camera"].items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubric.tf.random, "uniform", lambda shape, minval, maxval, dtype: tf.constant(next(grid), dtype)
        )
        patch.setattr(kubric.tf, "multinomial", multinomial)
        size = example["video"].shape[1:3]
        out = kubric.add_tracks(data, train_size=size, random_crop=False, tracks_to_sample=num_points)
    return {k: out[k].numpy() for k in ("query_points", "target_points", "occluded")}


@pytest.mark.skipif(
    importlib.util.find_spec("kubric") is None,
    reason="Kubric's own reader (pip install kubric-nightly, not a gmrw dependency) is not installed",
)
def test_matches_kubrics_own_code(movi_root):
    """Where Kubric's reader is installed: its TensorFlow code and ours, fed the same random draws."""
    kubric = importlib.import_module("kubric.challenges.point_tracking.dataset")
    reader = MoviEReader(movi_root, "validation")
    for index in range(len(reader)):
        example = reader.example(index, TRACK_FEATURES)
        offsets = [1, 2, 3]
        ours = sample_kubric_tracks(example, 300, _Draws(offsets, index))  # more than fit: padded
        theirs = _kubric_tracks(kubric, example, offsets, index, 300)
        np.testing.assert_allclose(ours["query_points"], theirs["query_points"], atol=1e-4)
        np.testing.assert_allclose(ours["target_points"], theirs["target_points"], atol=1e-3)
        np.testing.assert_array_equal(ours["occluded"], theirs["occluded"])
