"""Kubric MOVi-E: a tiny TFDS folder with movi_e's feature spec, read as TFDS and by our reader."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmrw.data.kubric import KubricPairs
from gmrw.data.modules import ClipDataModule
from gmrw.data.readers.movi_e import MoviEReader, decode_flows, find_version_dir
from gmrw.datatools import tiny
from gmrw.datatools.tiny.movi_e import TINY_FORWARD_FLOW_RANGE, TINY_FORWARD_FLOW_ROWCOL
from gmrw.video import write_video

FRAMES, SIZE = 6, (32, 32)


@pytest.fixture(scope="module")
def movi_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    version_dir = tiny.write_tiny_movi_e(root, num_train=3, num_validation=2, num_frames=FRAMES, size=SIZE)
    return root, version_dir


def test_layout_is_the_public_bucket_layout_and_tfds_reads_it(movi_root):
    root, version_dir = movi_root
    assert version_dir == root / "movi_e" / "256x256" / "1.0.0"
    names = {p.name for p in version_dir.iterdir()}
    assert {"dataset_info.json", "features.json"} <= names
    assert any(n.startswith("movi_e-train.tfrecord-") for n in names)
    assert any(n.startswith("movi_e-validation.tfrecord-") for n in names)
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(version_dir))
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["validation"].num_examples == 2
    features = builder.info.features
    assert features["video"].shape == (FRAMES, *SIZE, 3)
    assert features["forward_flow"].shape == (FRAMES, *SIZE, 2)
    assert features["forward_flow"].np_dtype == np.uint16
    for key in ("segmentations", "depth", "normal", "object_coordinates", "instances", "camera"):
        assert key in features
    assert find_version_dir(root) == version_dir


def test_feature_selection_reads_only_what_is_asked(movi_root):
    """Picking features out of a record's bytes gives exactly the protobuf's own entries."""
    import tensorflow as tf

    from gmrw.data.readers.tf_example import select_from_bytes

    reader = MoviEReader(movi_root[0], "train")
    raw = reader.raw(0)
    full = tf.train.Example.FromString(raw).features.feature
    for keys in (["video"], ["metadata", "camera"], ["instances", "depth", "nothing_like_this"]):
        picked = tf.train.Example.FromString(reader.select(0, keys)).features.feature
        assert sorted(picked) == sorted(k for k in full if k.split("/")[0] in keys)
        for name in picked:
            assert picked[name] == full[name], name
        assert reader.select(0, keys) == select_from_bytes(raw, keys)
    read_sizes = []

    def counting_read(pos, n):
        read_sizes.append(min(n, len(raw) - pos))
        return raw[pos : pos + n]

    from gmrw.data.readers.tf_example import select_features

    selected = select_features(counting_read, len(raw), ["metadata"])
    # The wanted entries, plus a short header (with the name) of each feature of the record.
    assert sum(read_sizes) <= len(selected) + 24 + len(full) * (24 + 256)
    assert sum(read_sizes) < 0.2 * len(raw)


def test_reader_matches_tfds_own_pipeline(movi_root):
    """Every feature our reader decodes equals what TFDS's tf.data pipeline gives for that video."""
    root, version_dir = movi_root
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(version_dir))
    keys = (
        "video",
        "segmentations",
        "depth",
        "normal",
        "object_coordinates",
        "forward_flow",
        "camera",
        "instances",
    )
    reader = MoviEReader(root, "validation")
    ours = {}
    for i in range(len(reader)):
        ex = reader.example(i, (*keys, "metadata"))
        ours[ex["metadata"]["video_name"]] = ex
    for theirs in tfds.as_numpy(builder.as_dataset(split="validation")):
        mine = ours[theirs["metadata"]["video_name"]]
        for key in keys:
            if isinstance(theirs[key], dict):
                for sub in ("positions", "quaternions") if key == "camera" else ("bboxes_3d", "quaternions"):
                    np.testing.assert_array_equal(mine[key][sub], theirs[key][sub], err_msg=f"{key}/{sub}")
            else:
                assert mine[key].dtype == theirs[key].dtype, key
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
        frames, picked = reader.video_frames(
            list(ours).index(theirs["metadata"]["video_name"]), lambda n: [n - 1, 0]
        )
        assert picked == [FRAMES - 1, 0]
        np.testing.assert_array_equal(frames, theirs["video"][[FRAMES - 1, 0]])


def test_reader_decodes_every_example(movi_root):
    root, _ = movi_root
    for split, n in (("train", 3), ("validation", 2)):
        reader = MoviEReader(root, split)
        assert len(reader) == n
        names = set()
        for i in range(n):
            ex = reader.example(i, ("video", "metadata"))
            assert ex["video"].shape == (FRAMES, *SIZE, 3) and ex["video"].dtype == np.uint8
            names.add(ex["metadata"]["video_name"])
        assert len(names) == n


def test_flows_decode_to_pixels_dx_dy(movi_root):
    root, _ = movi_root
    reader = MoviEReader(root, "train")
    ex = reader.example(0, ("forward_flow", "backward_flow", "metadata"))
    forward, backward = decode_flows(ex)
    assert forward.shape == (FRAMES, 2, *SIZE) and backward.shape == (FRAMES, 2, *SIZE)
    d_row, d_col = TINY_FORWARD_FLOW_ROWCOL
    step = (TINY_FORWARD_FLOW_RANGE[1] - TINY_FORWARD_FLOW_RANGE[0]) / 65535
    # The last frame has no next frame (and the first no previous one): Kubric leaves those flows zero.
    np.testing.assert_allclose(forward[:-1, 0], d_col, atol=step)  # dx
    np.testing.assert_allclose(forward[:-1, 1], d_row, atol=step)  # dy
    # backward flow: displacement into the previous frame, the opposite motion.
    np.testing.assert_allclose(backward[1:, 0], -d_col, atol=1e-3)
    np.testing.assert_allclose(backward[1:, 1], -d_row, atol=1e-3)


def test_flow_moves_frame_t_onto_t_plus_1(movi_root):
    root, _ = movi_root
    ds = KubricPairs(root, "train", img_size1=SIZE, img_size2=SIZE)
    item = ds.video_with_flows(0)
    video = torch.from_numpy(item["video"]).permute(0, 3, 1, 2).float()
    # (2, H, W): pixel p of frame 0 is at p + flow in frame 1
    flow = torch.from_numpy(item["forward_flow"][0])
    h, w = SIZE
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    gx, gy = (xs + flow[0]) / (w - 1) * 2 - 1, (ys + flow[1]) / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)[None]
    warped = F.grid_sample(video[1:2], grid, align_corners=True)
    inside = (grid.abs() <= 1).all(-1)[0]
    err = (warped[0] - video[0]).abs().mean(0)[inside].mean()
    zero = (video[1] - video[0]).abs().mean(0)[inside].mean()
    assert err < 0.3 * zero, (float(err), float(zero))


def test_training_samples_follow_the_contract(movi_root):
    root, _ = movi_root
    ds = KubricPairs(root, "train", img_size1=(40, 40), img_size2=(24, 32), aug_setting="setting2", seed=1)
    s = ds[1]
    assert s["frames"].shape == (4, 3, 24, 32) and s["frames"].dtype == torch.float32
    assert (
        0 <= float(s["frames"].min()) and float(s["frames"].max()) <= 255 and float(s["frames"].max()) > 1.5
    )
    assert s["affine_b2f"].shape == (2, 3) and int(s["index"]) == 1
    again = ds[1]
    assert torch.equal(s["frames"], again["frames"])
    # affine correctness on Kubric frames too
    f1, f1b = s["frames"][0:1], s["frames"][3:4]
    grid = F.affine_grid(s["affine_b2f"][None], f1.shape, align_corners=True)
    mask = (grid.abs() <= 1).all(-1)
    err = (F.grid_sample(f1b, grid, align_corners=True) - f1).abs().mean(1)[mask].mean()
    assert err < 10.0


def test_frame_choice_consecutive_or_random_skip(movi_root):
    root, _ = movi_root
    ds = KubricPairs(root, "train", img_size1=SIZE, img_size2=SIZE)
    rng = np.random.default_rng(0)
    for _ in range(30):
        i, j = ds.pick_frames(FRAMES, rng)
        assert j == i + 1 and 0 <= i and j < FRAMES
    ds.random_frame_skip = True
    gaps = set()
    for _ in range(100):
        i, j = ds.pick_frames(FRAMES, rng)
        assert 0 <= i < j < FRAMES  # the skip never leaves the (short) video
        gaps.add(j - i)
    assert len(gaps) > 2


def test_datamodule_loader_and_tsv_validation(movi_root, tmp_path):
    root, _ = movi_root
    tsv = tiny.write_kubric_tsv(tmp_path / "validation_data.tsv", num_videos=3, num_frames=FRAMES, size=32)
    dm = ClipDataModule(
        partial(KubricPairs, str(root), img_size1=(40, 40), img_size2=(32, 32)),
        batch_size=2,
        num_workers=0,
        val={"format": "tapvid_kubric_tsv", "path": str(tsv), "max_videos": 2, "resolution": [32, 32]},
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["index"].dtype == torch.int64
    (loader,) = dm.val_dataloader()
    val = list(loader)
    assert len(val) == 2
    assert val[0]["video"].shape == (1, FRAMES, 32, 32, 3) and val[0]["query_points"].shape[-1] == 3


def test_missing_root_fails_with_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="movi_e/256x256/<version>"):
        KubricPairs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="movi_e/256x256"):
        KubricPairs(tmp_path / "empty")


@pytest.mark.slow
def test_16bit_layers_decode_after_a_video_was_read(movi_root, tmp_path):
    """decord bundles an old zlib; TensorFlow's PNG decoder must still work after decord is loaded
    (a Kinetics run validating on TAP-Vid-Kubric reads both in one process)."""
    import subprocess
    import sys

    video = write_video(tmp_path / "v.mp4", tiny.textured_video(4, 48, 64))
    code = (
        "import sys; from gmrw.video import read_frames; from gmrw.data.readers.movi_e import MoviEReader;"
        f"read_frames({str(video)!r}, indices=[0, 1]);"
        f"ex = MoviEReader({str(movi_root[0])!r}, 'validation').example(0, ('depth', 'normal'));"
        "print(ex['depth'].dtype, ex['normal'].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"uint16 ({FRAMES}, 32, 32, 3)" in out.stdout
