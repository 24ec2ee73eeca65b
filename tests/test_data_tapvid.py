"""TAP-Vid readers: query sampling, pixel conversion, every file format, rank sharding."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gmrw.data.loaders import tapvid_loader
from gmrw.data.modules import TapVidDataModule
from gmrw.data.readers.tapvid import read_tsv_row, sample_queries_first, sample_queries_strided
from gmrw.data.tapvid import TapVidDataset
from gmrw.datatools import tiny


def _definition_first(occ, pts):
    """Straight from the definition: each track with a visible frame, queried at its first one."""
    q, t_out, o_out = [], [], []
    for n in range(occ.shape[0]):
        visible = [t for t in range(occ.shape[1]) if not occ[n, t]]
        if not visible:
            continue
        t = visible[0]
        q.append([t, pts[n, t, 1], pts[n, t, 0]])
        t_out.append(pts[n])
        o_out.append(occ[n])
    return np.array(q), np.array(t_out), np.array(o_out)


def _definition_strided(occ, pts, stride=5):
    q, t_out, o_out = [], [], []
    for t in range(0, occ.shape[1], stride):
        for n in range(occ.shape[0]):
            if not occ[n, t]:
                q.append([t, pts[n, t, 1], pts[n, t, 0]])
                t_out.append(pts[n])
                o_out.append(occ[n])
    return np.array(q), np.array(t_out), np.array(o_out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_query_sampling_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    occ = rng.random((9, 17)) < 0.4
    occ[0] = True  # never visible
    pts = rng.random((9, 17, 2)).astype(np.float32) * 100
    got = sample_queries_first(occ, pts)
    q, t, o = _definition_first(occ, pts)
    np.testing.assert_allclose(got["query_points"], q)
    np.testing.assert_allclose(got["target_points"], t)
    np.testing.assert_array_equal(got["occluded"], o)
    assert len(q) == 8  # the never-visible track is dropped
    got = sample_queries_strided(occ, pts)
    q, t, o = _definition_strided(occ, pts)
    np.testing.assert_allclose(got["query_points"], q)
    np.testing.assert_allclose(got["target_points"], t)
    np.testing.assert_array_equal(got["occluded"], o)
    assert set(np.unique(got["query_points"][:, 0])) <= {0, 5, 10, 15}


def test_davis_pickle_example_in_pixels(tmp_path):
    path = tiny.write_tapvid_pickle(tmp_path / "tapvid_davis.pkl", "davis", num_videos=2, size=(40, 48))
    ds = TapVidDataset("tapvid_davis", path, query_mode="first", resolution=(64, 80))
    assert len(ds) == 2 and ds.names == ["video0", "video1"]
    ex = ds[0]
    assert ex["video"].shape == (8, 64, 80, 3) and ex["video"].dtype == torch.uint8
    raw = pickle.load(open(path, "rb"))["video0"]
    keep = (~raw["occluded"]).any(1)
    # targets: (x, y) in [0,1] × (W, H) of the output resolution
    np.testing.assert_allclose(
        ex["target_points"].numpy(), raw["points"][keep] * np.array([80, 64]), rtol=1e-6
    )
    np.testing.assert_array_equal(ex["occluded"].numpy(), raw["occluded"][keep])
    # queries (t, y, x): point 0 is first visible at frame 2 (see tiny.tapvid_tracks)
    t0 = 2
    np.testing.assert_allclose(
        ex["query_points"][0].numpy(),
        [t0, raw["points"][0, t0, 1] * 64, raw["points"][0, t0, 0] * 80],
        rtol=1e-6,
    )
    assert ex["query_points"].dtype == torch.float32 and ex["occluded"].dtype == torch.bool
    assert ex["name"] == "video0"


def test_rgb_stacking_list_and_strided(tmp_path):
    path = tiny.write_tapvid_pickle(
        tmp_path / "tapvid_rgb_stacking.pkl", "rgb_stacking", num_videos=3, num_frames=12
    )
    ds = TapVidDataset("tapvid_rgb_stacking", path, query_mode="strided", resolution=(32, 32))
    assert len(ds) == 3
    ex = ds[2]
    assert ex["video"].shape == (12, 32, 32, 3)
    assert set(ex["query_points"][:, 0].tolist()) <= {0.0, 5.0, 10.0}
    n = ex["query_points"].shape[0]
    assert ex["target_points"].shape == (n, 12, 2) and ex["occluded"].shape == (n, 12)
    # every query is visible at its own frame and sits on its track
    for q, track, occ in zip(ex["query_points"], ex["target_points"], ex["occluded"]):
        t = int(q[0])
        assert not occ[t]
        torch.testing.assert_close(q[1:].flip(0), track[t])


def test_kinetics_shards_with_jpeg_frames(tmp_path):
    folder = tmp_path / "tapvid_kinetics"
    tiny.write_tapvid_pickle(folder / "0000_of_0010.pkl", "kinetics", num_videos=2, seed=0)
    tiny.write_tapvid_pickle(folder / "0001_of_0010.pkl", "kinetics", num_videos=3, seed=10)
    ds = TapVidDataset("tapvid_kinetics", folder, query_mode="first", resolution=(256, 256), max_videos=4)
    assert len(ds) == 4
    ex = ds[3]
    assert ex["video"].shape == (8, 256, 256, 3) and ex["video"].dtype == torch.uint8
    assert ex["name"] == "yt00011"
    assert float(ex["target_points"].max()) <= 256


def test_reference_tsv(tmp_path):
    path = tiny.write_kubric_tsv(
        tmp_path / "validation_data.tsv", num_videos=3, num_frames=6, size=32, num_points=8
    )
    row = read_tsv_row(path, 0)
    assert row["video"].shape == (6, 32, 32, 3) and row["query_points"].shape == (8, 3)
    ds = TapVidDataset("tapvid_kubric_tsv", path, resolution=(64, 64))
    assert len(ds) == 3
    ex = ds[1]
    raw = TapVidDataset("tapvid_kubric_tsv", path, resolution=None)[1]
    assert ex["video"].shape == (6, 64, 64, 3) and raw["video"].shape == (6, 32, 32, 3)
    torch.testing.assert_close(ex["target_points"], raw["target_points"] * 2)
    torch.testing.assert_close(ex["query_points"][:, 1:], raw["query_points"][:, 1:] * 2)
    torch.testing.assert_close(ex["query_points"][:, 0], raw["query_points"][:, 0])
    # video stored in [-1, 1] comes back as uint8
    assert raw["video"].dtype == torch.uint8 and int(raw["video"].max()) > 128


def test_datamodule_shards_videos_over_ranks_exactly_once(tmp_path):
    path = tiny.write_tapvid_pickle(
        tmp_path / "tapvid_davis.pkl", "davis", num_videos=5, num_frames=4, size=(16, 16)
    )
    dm = TapVidDataModule(format="tapvid_davis", path=str(path), resolution=(16, 16))
    dm.setup("test")
    names = []
    per_rank = []
    for rank in range(2):
        batches = list(tapvid_loader(dm.dataset, rank=rank, world_size=2))
        assert all(b["video"].shape[0] == 1 for b in batches)
        per_rank.append([b["name"][0] for b in batches])
        names += per_rank[-1]
    assert sorted(names) == sorted(f"video{i}" for i in range(5))
    assert len(names) == len(set(names)) == 5
    assert per_rank == [["video0", "video2", "video4"], ["video1", "video3"]]


def test_errors_name_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tapvid_davis.pkl"):
        TapVidDataset("tapvid_davis", tmp_path / "missing.pkl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="_of_0010.pkl"):
        TapVidDataset("tapvid_kinetics", tmp_path / "empty")
    with pytest.raises(ValueError, match="query mode"):
        TapVidDataset("tapvid_davis", tmp_path / "missing.pkl", query_mode="last")


def _write_format(fmt: str, folder) -> str:
    if fmt == "tapvid_davis":
        return str(tiny.write_tapvid_pickle(folder / "tapvid_davis.pkl", "davis", num_videos=2))
    if fmt == "tapvid_rgb_stacking":
        return str(tiny.write_tapvid_pickle(folder / "tapvid_rgb_stacking.pkl", "rgb_stacking", num_videos=2))
    if fmt == "tapvid_kinetics":
        tiny.write_tapvid_pickle(folder / "shards" / "0000_of_0010.pkl", "kinetics", num_videos=2)
        return str(folder / "shards")
    if fmt == "tapvid_kubric":
        tiny.write_tiny_movi_e(folder, num_train=1, num_validation=2, num_frames=8, size=(16, 16))
        return str(folder)
    return str(tiny.write_kubric_tsv(folder / "validation_data.tsv", num_videos=2, num_frames=8, size=32))


# Kubric's queries are sampled with the data: query_mode does not apply to those formats.
FORMATS_AND_QUERY_MODES = [
    (fmt, mode)
    for fmt in (
        "tapvid_davis",
        "tapvid_rgb_stacking",
        "tapvid_kinetics",
        "tapvid_kubric",
        "tapvid_kubric_tsv",
    )
    for mode in (("first",) if fmt.startswith("tapvid_kubric") else ("first", "strided"))
]


@pytest.mark.parametrize(("fmt", "query_mode"), FORMATS_AND_QUERY_MODES)
def test_datamodule_feeds_evaluation_for_every_format(tmp_path, fmt, query_mode):
    """What evaluation consumes: batches of one contract example, each query on its own track."""
    dm = TapVidDataModule(
        format=fmt, path=_write_format(fmt, tmp_path), query_mode=query_mode, resolution=(24, 40)
    )
    batches = list(dm.val_dataloader())
    assert len(batches) == 2
    for b in batches:
        video, queries, targets, occluded = b["video"], b["query_points"], b["target_points"], b["occluded"]
        assert video.dtype == torch.uint8 and video.shape[0] == 1 and video.shape[2:] == (24, 40, 3)
        t_len, n = video.shape[1], queries.shape[1]
        assert n > 0 and queries.shape == (1, n, 3) and queries.dtype == torch.float32
        assert targets.shape == (1, n, t_len, 2) and targets.dtype == torch.float32
        assert occluded.shape == (1, n, t_len) and occluded.dtype == torch.bool
        assert isinstance(b["name"][0], str)
        t = queries[0, :, 0]
        assert torch.equal(t, t.round()) and 0 <= t.min() and t.max() < t_len
        assert 0 <= queries[0, :, 1].min() and queries[0, :, 1].max() <= 24  # y within the height
        assert 0 <= queries[0, :, 2].min() and queries[0, :, 2].max() <= 40  # x within the width
        at_query = targets[0, torch.arange(n), t.long()]
        torch.testing.assert_close(at_query, queries[0, :, [2, 1]], atol=1e-3, rtol=0)
        assert not occluded[0, torch.arange(n), t.long()].any()
