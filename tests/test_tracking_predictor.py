"""gmrw.Predictor: the same tracks as gmrw.track for files and arrays, resizing to the model's
processing size with tracks back in the video's pixels, the model's own defaults, and clear errors
for input it cannot track."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gmrw
from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW
from gmrw.tracking import Predictor, track
from gmrw.video import write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = textured_video(6, 48, 64, seed=7)
    path = write_video(tmp_path_factory.mktemp("predictor") / "clip.mp4", frames, fps=6)
    return frames, path


class ZeroFlow(torch.nn.Module):
    """A stand-in model with zero flow that records the frame sizes it sees."""

    def __init__(self, defaults=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.tracking_defaults = defaults or {}
        self.sizes: set[tuple[int, int]] = set()

    def flow(self, src, dst, method="weighted_sum", window=None, size=None):
        self.sizes.add(tuple(src.shape[-2:]))
        return torch.zeros(src.shape[0], 2, *size)


QUERIES = torch.tensor([[0, 10.0, 12.0], [2, 30.0, 40.5], [5, 47.0, 63.0]])


@pytest.mark.parametrize("mode", ["chained", "direct"])
def test_array_equals_gmrw_track(small_model, clip, mode):
    """At the video's own size the Predictor is gmrw.track: same loop, same frames."""
    frames, _ = clip
    predictor = Predictor(small_model, "cpu", mode=mode, processing_size=0, pair_batch_size=4)
    tracks, occluded = predictor(frames, queries=QUERIES)
    expected, expected_occ = track(
        small_model, torch.from_numpy(frames)[None], QUERIES[None], mode=mode, pair_batch_size=4
    )
    assert torch.allclose(tracks, expected[0], atol=1e-4) and torch.equal(occluded, expected_occ[0])
    assert tracks.shape == (3, 6, 2) and tracks.dtype == torch.float32 and occluded.dtype == torch.bool


def test_file_equals_its_decoded_frames(small_model, clip):
    from gmrw.video import read_frames

    _, path = clip
    decoded, _ = read_frames(str(path), indices=list(range(6)))
    predictor = Predictor(small_model, "cpu", processing_size=32)
    from_file = predictor(path, queries=QUERIES, grid_size=2)
    from_array = predictor(torch.from_numpy(decoded), queries=QUERIES, grid_size=2)
    assert torch.equal(from_file[0], from_array[0]) and torch.equal(from_file[1], from_array[1])
    assert from_file[0].shape == (3 + 4, 6, 2)


def test_resizes_to_the_model_size_and_answers_in_video_pixels():
    """A 96×128 video is tracked at the processing size the model carries (short side 48 → 48×64);
    with zero flow every track stays exactly at its query, in the video's own pixels."""
    model = ZeroFlow({"mode": "direct", "processing_size": 48})
    predictor = Predictor(model, "cpu")
    assert predictor.options.mode == "direct" and predictor.frame_size(96, 128) == (48, 64)
    video = np.random.default_rng(0).integers(0, 255, (4, 96, 128, 3), dtype=np.uint8)
    queries = torch.tensor([[0, 10.0, 20.0], [3, 95.0, 127.0], [1, 0.0, 0.0]])
    tracks, occluded = predictor(video, queries=queries)
    assert model.sizes == {(48, 64)}
    expected = queries[:, [2, 1]].unsqueeze(1).expand(-1, 4, -1)
    assert torch.allclose(tracks[:2], expected[:2], atol=1e-4)
    assert not occluded.any()
    # A point on the frame's very edge is moved inside for the model (by half a model pixel); its
    # track still passes through the query itself.
    assert torch.equal(tracks[2, 1], torch.tensor([0.0, 0.0]))
    assert torch.allclose(tracks[2], expected[2], atol=0.5 + 1e-4)
    # Without a processing size, frames go to short side 256 and then × upsample_factor.
    plain = ZeroFlow()
    Predictor(plain, "cpu", upsample_factor=2)(video[:2], queries=queries[:1])
    assert plain.sizes == {(512, 688)}  # 256×341 → multiples of 8: 256×344, then ×2
    explicit = ZeroFlow({"processing_size": 48})
    Predictor(explicit, "cpu", processing_size=64, mode="chained")(video[:2], queries=queries[:1])
    assert explicit.sizes == {(64, 88)}


def test_grid_mask_and_dense_queries():
    predictor = Predictor(ZeroFlow(), "cpu", processing_size=0)
    video = np.zeros((3, 48, 64, 3), dtype=np.uint8)
    source = predictor.open(video)
    grid = predictor.make_queries(source, grid_size=4, grid_query_frame=2)
    assert grid.shape == (16, 3) and (grid[:, 0] == 2).all()
    assert torch.allclose(grid[0], torch.tensor([2, 48 / 8 - 0.5, 64 / 8 - 0.5]))  # cell centres
    mask = np.zeros((48, 64), bool)
    mask[:24, :32] = True  # the top-left quarter
    masked = predictor.make_queries(source, grid_size=4, segm_mask=mask)
    assert len(masked) == 4 and (masked[:, 1] < 24).all() and (masked[:, 2] < 32).all()
    tracks, occluded = predictor(video, dense=4, grid_query_frame=1)
    rows, cols = 12, 16
    grid_xy = tracks.reshape(rows, cols, 3, 2)[:, :, 1]
    assert torch.equal(grid_xy[2, 5], torch.tensor([20.0, 8.0]))  # (x, y) = (4·5, 4·2)
    assert tracks.shape == (rows * cols, 3, 2) and not occluded.any()
    assert len(predictor.make_queries(source, dense=5, segm_mask=mask)) == 5 * 7


def test_gmrw_exports_predictor():
    assert gmrw.Predictor is Predictor


@pytest.mark.parametrize(
    "video, message",
    [
        (np.zeros((4, 16, 16, 3), dtype=np.int64), "must be uint8"),
        (np.zeros((4, 16, 16, 3), dtype=bool), "must be uint8"),
        (np.zeros((4, 3, 16, 16), dtype=np.uint8), r"channels go last"),
        (np.zeros((16, 16, 3), dtype=np.uint8), r"shape \(T, H, W, 3\)"),
        (np.zeros((0, 16, 16, 3), dtype=np.uint8), "no frames"),
        (np.zeros((1, 16, 16, 3), dtype=np.uint8), "1 frame"),
        (np.full((2, 16, 16, 3), np.nan, dtype=np.float32), "NaN"),
        (np.full((2, 16, 16, 3), 300.0, dtype=np.float32), r"\[0, 255\]"),
        ([[1, 2, 3]], "a path or a"),
    ],
)
def test_bad_videos_are_named(video, message):
    with pytest.raises(ValueError, match=message):
        Predictor(ZeroFlow(), "cpu")(video, queries=[[0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"queries": [[0, 10.0, 70.0]]}, "query 0 .*outside the 64x48 frame"),
        ({"queries": [[0, -1.0, 5.0]]}, "outside the 64x48 frame"),
        ({"queries": [[6, 1.0, 1.0]]}, "frame 6 is out of range, the video has frames 0..5"),
        ({"queries": [[0.5, 1.0, 1.0]]}, "must be an integer"),
        ({"queries": [[0, float("nan"), 1.0]]}, "not a finite number"),
        ({"queries": [[0, 1.0]]}, r"\(N, 3\) rows of \(t, y, x\)"),
        ({}, "no query points"),
        ({"grid_size": 2, "grid_query_frame": 9}, "grid_query_frame 9 is out of range"),
        ({"dense": 0}, "positive integer"),
        ({"dense": 2, "queries": [[0, 1.0, 1.0]]}, "dense alone"),
        ({"grid_size": 2, "segm_mask": np.ones((10, 10))}, r"segm_mask must be \(H, W\)"),
    ],
)
def test_bad_queries_are_named(clip, kwargs, message):
    frames, _ = clip
    with pytest.raises(ValueError, match=message):
        Predictor(ZeroFlow(), "cpu")(frames, **kwargs)


def test_bad_files_and_checkpoints_are_named(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    predictor = Predictor(ZeroFlow(), "cpu")
    with pytest.raises(ValueError, match="cannot read video .*garbage.mp4"):
        predictor(garbage, grid_size=2)
    with pytest.raises(ValueError, match="does not exist"):
        predictor(tmp_path / "missing.mp4", grid_size=2)
    with pytest.raises(ValueError, match="checkpoint=.*nope.pth: no such file"):
        Predictor(tmp_path / "nope.pth", "cpu")
    not_gmrw = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, not_gmrw)
    with pytest.raises(ValueError, match="resnet.pth.*GMRW"):
        Predictor(not_gmrw, "cpu")
    with pytest.raises(ValueError, match="needs a window"):
        Predictor(ZeroFlow(), "cpu", method="weighted_argmax")
    with pytest.raises(ValueError, match="pair_batch_size"):
        Predictor(ZeroFlow(), "cpu", pair_batch_size=0)
