"""Procedural data: formats, determinism, exact ground truth, the crop affine, the datamodule."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from gmrw.data.modules import ClipDataModule
from gmrw.data.photo_videos import PhotoTapVidDataset
from gmrw.data.queries import QUERY_STRIDE, tapvid_queries
from gmrw.data.scenes import TextureBank
from gmrw.data.synthetic import SyntheticTapVidDataset, SyntheticTrainDataset, render_video
from helpers import compose_train

SMALL_TRAIN = {"length": 16, "img_size1": 48, "img_size2": 32, "frame_size": 48, "texture_bank": 4}
BANK = TextureBank(4, side=96, seed=0)


# ------------------------------------------------------------------------------ training clips


def test_train_item_format():
    dataset = SyntheticTrainDataset(**SMALL_TRAIN)
    item = dataset[3]
    assert set(item) == {"frames", "affine_b2f", "index"}
    assert item["frames"].shape == (4, 3, 32, 32) and item["frames"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 255 and item["frames"].std() > 10
    assert item["affine_b2f"].shape == (2, 3) and item["affine_b2f"].dtype == torch.float32
    assert item["index"].dtype == torch.int64 and int(item["index"]) == 3
    assert len(dataset) == 16
    with pytest.raises(IndexError):
        dataset[16]


def test_train_items_are_pure_functions_of_the_key():
    dataset = SyntheticTrainDataset(**SMALL_TRAIN)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    threads = torch.get_num_threads()
    a, b = dataset[5], dataset[5]
    assert torch.get_num_threads() == threads, "the thread count was not restored"
    assert torch.equal(torch.get_rng_state(), torch_state), "the global torch RNG was consumed"
    assert np.array_equal(np.random.get_state()[1], numpy_state), "the global numpy RNG was consumed"
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["affine_b2f"], b["affine_b2f"])
    # A fresh dataset object (another process, a resumed run) gives the same sample.
    assert torch.equal(SyntheticTrainDataset(**SMALL_TRAIN)[5]["frames"], a["frames"])
    assert not torch.equal(dataset[6]["frames"], a["frames"])
    assert not torch.equal(SyntheticTrainDataset(**SMALL_TRAIN, seed=1)[5]["frames"], a["frames"])
    # (index, sample_seed) keys: same video, crops from the seed.
    keyed = dataset[(5, 123)]
    assert int(keyed["index"]) == 5
    assert torch.equal(dataset[(5, 123)]["frames"], keyed["frames"])
    assert not torch.equal(dataset[(5, 124)]["affine_b2f"], keyed["affine_b2f"])


def test_train_pair_frames_differ_by_motion_and_camera_faults():
    dataset = SyntheticTrainDataset(**SMALL_TRAIN)
    pair = dataset.pair(0)
    assert pair.shape == (2, 3, 48, 48)
    assert 0 < (pair[0] - pair[1]).abs().mean() < 80
    clean = SyntheticTrainDataset(**SMALL_TRAIN, degrade=0.0).pair(0)
    assert not torch.equal(clean, pair)


def test_frame_gap_is_drawn_from_its_range():
    with pytest.raises(ValueError, match="frame_gap"):
        SyntheticTrainDataset(**SMALL_TRAIN, frame_gap=(3, 1))
    dataset = SyntheticTrainDataset(**SMALL_TRAIN, frame_gap=(2, 2), degrade=0.0)
    still = SyntheticTrainDataset(**{**SMALL_TRAIN, "frame_gap": 1}, degrade=0.0, motion_scale=0.0)
    pair = still.pair(1)
    assert torch.allclose(pair[0], pair[1], atol=1.0)  # no motion, no faults: the same frame
    assert (dataset.pair(1)[0] - dataset.pair(1)[1]).abs().mean() > 1.0


@pytest.mark.parametrize("index", [0, 1, 2])
def test_crop_affine_maps_forward_crop_to_backward_crop(index):
    # f1' sampled at affine_grid(affine_b2f) is f1 wherever the grid falls inside the crop.
    item = SyntheticTrainDataset(**SMALL_TRAIN, aug_setting="setting1")[index]
    frames, affine = item["frames"], item["affine_b2f"]
    grid = F.affine_grid(affine[None], (1, 3, 32, 32), align_corners=True)
    warped = F.grid_sample(frames[3:4], grid, align_corners=True)[0]
    inside = (grid[0].abs() <= 1).all(-1)
    assert inside.float().mean() > 0.05
    error = (warped - frames[0]).abs().mean(0)[inside].mean()
    identity = (frames[3] - frames[0]).abs().mean(0)[inside].mean()
    assert error < 12 and error < 0.5 * identity, (float(error), float(identity))


# ------------------------------------------------------------------------------ TAP-Vid examples


def test_val_example_format_and_determinism():
    dataset = SyntheticTapVidDataset(
        num_videos=2, num_frames=6, frame_size=(32, 48), num_points=10, texture_bank=2
    )
    example = dataset[1]
    assert set(example) == {"video", "query_points", "target_points", "occluded", "name"}
    assert example["video"].shape == (6, 32, 48, 3) and example["video"].dtype == torch.uint8
    n = example["query_points"].shape[0]
    assert n == 10
    assert example["query_points"].shape == (n, 3) and example["query_points"].dtype == torch.float32
    assert example["target_points"].shape == (n, 6, 2) and example["target_points"].dtype == torch.float32
    assert example["occluded"].shape == (n, 6) and example["occluded"].dtype == torch.bool
    assert isinstance(example["name"], str) and example["name"] != dataset[0]["name"]
    again = SyntheticTapVidDataset(
        num_videos=2, num_frames=6, frame_size=(32, 48), num_points=10, texture_bank=2
    )[1]
    for key in ("video", "query_points", "target_points", "occluded"):
        assert torch.equal(example[key], again[key]), key
    assert not torch.equal(dataset[0]["video"], example["video"])


def test_first_queries_are_at_the_first_visible_frame():
    video = render_video(7, BANK, num_frames=8, height=48, width=48, num_points=16, query_mode="first")
    t = video.query_points[:, 0].long()
    visible = ~video.occluded
    assert torch.equal(t, visible.float().argmax(1))
    assert visible[torch.arange(len(t)), t].all()
    at_query = video.target_points[torch.arange(len(t)), t]
    assert torch.allclose(video.query_points[:, 1:], at_query.flip(-1))


def test_strided_queries_follow_tapvid():
    video = render_video(7, BANK, num_frames=12, height=48, width=48, num_points=16, query_mode="strided")
    t = video.query_points[:, 0].long()
    assert (t % QUERY_STRIDE == 0).all()
    assert (~video.occluded)[torch.arange(len(t)), t].all()
    assert torch.equal(t, t.sort().values), "strided queries are ordered by frame"
    # Every (track, stride frame) with the track visible appears exactly once.
    first = render_video(7, BANK, num_frames=12, height=48, width=48, num_points=16, query_mode="first")
    expected = int((~first.occluded[:, ::QUERY_STRIDE]).sum())
    assert len(t) == expected


def test_tapvid_queries_on_a_toy_track():
    tracks = np.arange(2 * 11 * 2, dtype=float).reshape(2, 11, 2)
    occluded = np.ones((2, 11), dtype=bool)
    occluded[0, 3:] = False
    occluded[1, [0, 10]] = False
    queries, index = tapvid_queries(tracks, occluded, "first")
    assert index.tolist() == [0, 1] and queries[:, 0].tolist() == [3, 0]
    assert queries[0, 1:].tolist() == [tracks[0, 3, 1], tracks[0, 3, 0]]
    queries, index = tapvid_queries(tracks, occluded, "strided")
    assert list(zip(queries[:, 0].tolist(), index.tolist())) == [(0, 1), (5, 0), (10, 0), (10, 1)]


# ------------------------------------------------------------------------------ datamodule


def small_world(val_videos: int = 3, photo_videos: int = 1) -> ClipDataModule:
    """The default experiment's datamodule, small."""
    return ClipDataModule(
        partial(SyntheticTrainDataset, length=8, img_size1=48, img_size2=32, frame_size=48, texture_bank=4),
        batch_size=2,
        val_sets={
            "val": partial(
                SyntheticTapVidDataset,
                num_videos=val_videos,
                num_frames=5,
                frame_size=32,
                num_points=6,
                texture_bank=4,
            ),
            "val_photos": partial(PhotoTapVidDataset, num_videos=photo_videos, num_frames=3),
        },
    )


def test_datamodule_loaders_batch_the_contract_formats():
    dm = small_world()
    dm.setup("fit")
    assert dm.val_set_names == ["val", "val_photos"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["affine_b2f"].shape == (2, 2, 3) and batch["index"].shape == (2,)
    assert batch["index"].dtype == torch.int64
    assert torch.equal(next(iter(dm.train_dataloader()))["frames"], batch["frames"])
    world, photos = (list(loader) for loader in dm.val_dataloader())
    assert len(world) == 3 and len(photos) == 1
    assert world[0]["video"].shape == (1, 5, 32, 32, 3) and world[0]["video"].dtype == torch.uint8
    assert world[0]["query_points"].shape == (1, 6, 3) and world[0]["occluded"].shape == (1, 6, 5)
    assert world[0]["name"] == ["synthetic_0_0000"]
    assert photos[0]["video"].shape == (1, 3, 256, 256, 3) and photos[0]["name"][0].startswith("photos_0_000")


def test_config_instantiates():
    cfg = compose_train(
        ["experiment=synthetic", "data.train_set.length=4", "data.train_set.texture_bank=2"]
    ).data
    dm = instantiate(cfg)
    assert isinstance(dm, ClipDataModule)
    dm.setup("fit")
    size2 = tuple(cfg.train_set.img_size2)
    assert dm.train_set.cropper.size2 == size2 and dm.train_set.cropper.setting == "setting2"
    assert min(size2) >= 128, "the world trains on crops of at least 128x128"
    assert dm.val_set_names == ["val", "val_photos"]
    world = dm.val_sets["val"]
    # The validation world moves like the training world and samples queries as the module scores them.
    assert world.query_mode == "first" and world.num_objects == dm.train_set.num_objects
    assert dm.train_set[0]["frames"].shape == (4, 3, *size2)


def test_a_validation_set_can_be_left_out_from_the_command_line():
    cfg = compose_train(["data.val_sets.val_photos=null"]).data
    assert instantiate(cfg).val_set_names == ["val"]


def test_a_validation_set_smaller_than_the_world_is_named():
    from types import SimpleNamespace

    dm = small_world(val_videos=2, photo_videos=1)
    dm.trainer_or_none = lambda: SimpleNamespace(global_rank=0, world_size=2)
    with pytest.raises(ValueError, match="'val_photos' has 1 video"):
        dm.val_dataloader()
