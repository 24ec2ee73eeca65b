"""Kinetics frame pairs: real mp4s written with imageio-ffmpeg, decoded with decord."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmrw.data.kinetics import KineticsPairs
from gmrw.data.modules import ClipDataModule
from gmrw.data.readers.kinetics import list_videos
from gmrw.datatools.tiny import write_tapvid_pickle, write_tiny_kinetics
from gmrw.video import pair_indices, read_frames


@pytest.fixture(scope="module")
def kinetics_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinetics")
    files = write_tiny_kinetics(root, num_frames=30, size=(48, 64))
    return root, files


def _dataset(root, **kw):
    args = dict(
        split="train", img_size1=(48, 64), img_size2=(40, 40), aug_setting="setting2", frame_gap=20, seed=0
    )
    args.update(kw)
    return KineticsPairs(root, **args)


def test_pair_indices_gap_and_clamp():
    rng = np.random.default_rng(0)
    for _ in range(50):
        i, j = pair_indices(30, 20, rng)
        assert j - i == 20 and 0 <= i and j <= 29
    assert pair_indices(10, 20, rng) == (0, 9)  # short video: first and last frame
    assert pair_indices(21, 20, rng) == (0, 20)
    assert pair_indices(1, 20, rng) == (0, 0)


def test_read_frames_decodes_only_the_pair(kinetics_root):
    _, files = kinetics_root
    frames, idx = read_frames(str(files["good"][0]), indices=[3, 23])
    assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
    assert idx == (3, 23)
    # The test videos translate, so the two frames differ.
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 5


def test_samples_shapes_ranges_and_determinism(kinetics_root):
    root, _ = kinetics_root
    ds = _dataset(root)
    good = [i for i, v in enumerate(ds.videos) if "vid" in v]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ds[good[0]]
    assert s["frames"].shape == (4, 3, 40, 40) and s["frames"].dtype == torch.float32
    assert 0.0 <= float(s["frames"].min()) and float(s["frames"].max()) <= 255.0
    assert float(s["frames"].max()) > 1.5  # [0, 255], not [0, 1]
    assert s["affine_b2f"].shape == (2, 3)
    assert s["index"].dtype == torch.int64 and int(s["index"]) == good[0]
    a, b = ds[(good[1], 1234)], ds[(good[1], 1234)]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["affine_b2f"], b["affine_b2f"])
    c = ds[(good[1], 99)]
    assert not torch.equal(a["affine_b2f"], c["affine_b2f"])


def test_affine_maps_forward_crop_onto_backward_crop(kinetics_root):
    """Sampling f1' at affine_grid(affine_b2f) reproduces f1 wherever the grid is inside f1'."""
    root, _ = kinetics_root
    ds = _dataset(root)
    good = [i for i, v in enumerate(ds.videos) if "vid" in v]
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    for key in [(good[0], 1), (good[1], 2), (good[2], 3)]:
        s = ds[key]
        f1, f1b = s["frames"][0:1], s["frames"][3:4]
        grid = F.affine_grid(s["affine_b2f"][None], f1.shape, align_corners=True)
        warped = F.grid_sample(f1b, grid, align_corners=True)
        mask = (grid.abs() <= 1).all(-1)
        assert mask.float().mean() > 0.2
        err = (warped - f1).abs().mean(1)[mask].mean()
        grid0 = F.affine_grid(identity[None], f1.shape, align_corners=True)
        baseline = (F.grid_sample(f1b, grid0, align_corners=True) - f1).abs().mean(1)[mask].mean()
        assert err < 8.0, float(err)
        assert err < 0.35 * baseline, (float(err), float(baseline))


def test_bad_videos_are_skipped_named_and_counted(kinetics_root):
    root, files = kinetics_root
    ds = _dataset(root)
    bad_idx = [ds.videos.index(str(p)) for p in files["bad"]]
    with pytest.warns(RuntimeWarning) as record:
        out = [ds[i] for i in bad_idx]
    messages = " ".join(str(w.message) for w in record)
    for p in files["bad"]:
        assert p.name in messages
    # The sample still comes back (another video), under the requested index.
    assert [int(o["index"]) for o in out] == bad_idx
    assert sorted(ds.skipped_files()) == sorted(str(p) for p in files["bad"])


def test_skips_in_workers_reach_the_main_process(kinetics_root, caplog):
    root, files = kinetics_root
    pairs = partial(KineticsPairs, str(root), img_size1=(48, 64), img_size2=(32, 32), frame_gap=20, seed=3)
    dm = ClipDataModule(pairs, batch_size=2, num_workers=2, seed=3)
    dm.setup("fit")
    loader = torch.utils.data.DataLoader(
        dm.train_set, batch_size=2, num_workers=2, sampler=list(range(len(dm.train_set)))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen = torch.cat([b["index"] for b in loader])
    assert sorted(seen.tolist()) == list(range(len(dm.train_set)))
    assert sorted(dm.skipped_files()) == sorted(str(p) for p in files["bad"])
    # The end-of-fit report (the datamodule's teardown) names them from the main process.
    with caplog.at_level("WARNING", logger="gmrw.data.modules"):
        dm.teardown("fit")
    assert "2 unreadable video(s) skipped" in caplog.text
    for p in files["bad"]:
        assert str(p) in caplog.text


def test_datamodule_batches_follow_the_contract(kinetics_root, tmp_path):
    root, _ = kinetics_root
    val_pkl = write_tapvid_pickle(tmp_path / "tapvid_davis.pkl", "davis", num_videos=2)
    dm = ClipDataModule(
        partial(KineticsPairs, str(root), img_size1=(48, 64), img_size2=(32, 32), frame_gap=20),
        batch_size=2,
        num_workers=0,
        val={"format": "tapvid_davis", "path": str(val_pkl), "query_mode": "first", "resolution": [32, 32]},
    )
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["affine_b2f"].shape == (2, 2, 3) and batch["index"].shape == (2,)
    (loader,) = dm.val_dataloader()
    val = list(loader)
    assert len(val) == 2 and val[0]["video"].shape[0] == 1 and val[0]["video"].dtype == torch.uint8


def test_missing_root_and_empty_split_fail_with_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected ROOT/train/<class name>/<video id>\.mp4"):
        list_videos(tmp_path / "nope", "train")
    (tmp_path / "k" / "train" / "some class").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no videos found"):
        KineticsPairs(tmp_path / "k", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KineticsPairs(tmp_path / "k", "val")


def test_decord_is_only_imported_through_import_decord():
    """A plain ``import decord`` anywhere breaks TensorFlow's PNG decoder for the whole process
    (see gmrw.video.import_decord), so the package and its tests go through the helper."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(path.relative_to(root))
        for folder in ("src", "tests", "benchmarks")
        for path in (root / folder).rglob("*.py")
        if path != root / "src" / "gmrw" / "video.py"
        and re.search(r"^\s*(import decord|from decord)", path.read_text(), re.M)
    ]
    assert not offenders, f"import decord through gmrw.video.import_decord in {offenders}"
