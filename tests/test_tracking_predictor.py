"""gmrw.Predictor: gmrw.track's tracks (one path: the same frames, model input and coordinates) for
files and arrays of any size, the model seeing its processing size while tracks stay in the video's
pixels, the model's own defaults, and clear errors for input it cannot track."""

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
    assert torch.equal(tracks, expected[0]) and torch.equal(occluded, expected_occ[0])
    assert tracks.shape == (3, 6, 2) and tracks.dtype == torch.float32 and occluded.dtype == torch.bool


@pytest.mark.parametrize(
    "height, width, options",
    [
        (256, 256, {"processing_size": 64, "mode": "chained"}),
        (200, 320, {"processing_size": 48, "mode": "direct", "round_trip": 3.0}),
        (101, 157, {"upsample_factor": 0.5, "mode": "chained"}),
        (101, 157, {"processing_size": 40, "mode": "direct", "method": "weighted_argmax", "window": 2.0}),
    ],
)
def test_predictor_is_gmrw_track_on_any_video_size(small_model, height, width, options):
    """The issue-20 check: on the same video and queries, with the same options, the Predictor and
    gmrw.track give the same tracks (they are one path), whatever the size; each track passes
    through its query exactly, in the video's own pixels."""
    frames = textured_video(4, height, width, seed=height)
    queries = torch.tensor(
        [
            [0, 0.0, 0.0],
            [1, height / 2 + 0.25, width / 3 - 0.75],
            [3, height - 1.0, width - 1.0],
            [2, 7.5, 11.0],
        ]
    )
    predictor = Predictor(small_model, "cpu", pair_batch_size=3, **options)
    tracks, occluded = predictor(frames, queries=queries)
    expected, expected_occ = track(
        small_model, torch.from_numpy(frames)[None], queries[None], pair_batch_size=3, **options
    )
    assert torch.equal(tracks, expected[0]) and torch.equal(occluded, expected_occ[0])
    at_query = tracks[torch.arange(4), queries[:, 0].long()]
    assert torch.equal(at_query, queries[:, [2, 1]])
    # and the model saw the processing size, not the video's
    assert predictor.model_size(height, width) != (height, width)


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
    with zero flow every track stays exactly at its query, in the video's own pixels, edges too."""
    model = ZeroFlow({"mode": "direct", "processing_size": 48})
    predictor = Predictor(model, "cpu")
    assert predictor.options.mode == "direct" and predictor.model_size(96, 128) == (48, 64)
    video = np.random.default_rng(0).integers(0, 255, (4, 96, 128, 3), dtype=np.uint8)
    queries = torch.tensor([[0, 10.0, 20.0], [3, 95.0, 127.0], [1, 0.0, 0.0]])
    tracks, occluded = predictor(video, queries=queries)
    assert model.sizes == {(48, 64)}
    assert torch.equal(tracks, queries[:, [2, 1]].unsqueeze(1).expand(-1, 4, -1))
    assert not occluded.any()
    # Without a processing size the model sees the video × upsample_factor (sides multiples of 8).
    plain = ZeroFlow()
    Predictor(plain, "cpu", upsample_factor=2)(video[:2], queries=queries[:1])
    assert plain.sizes == {(192, 256)}
    odd = ZeroFlow()
    Predictor(odd, "cpu")(video[:2, :93, :125], queries=queries[:1])
    assert odd.sizes == {(96, 128)}  # ×1, each side rounded to a multiple of 8
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


def test_gmrw_exports_what_a_user_needs():
    assert gmrw.Predictor is Predictor and gmrw.track is track
    names = set(gmrw.__all__) - {"__version__"}
    assert len(names) <= 13 and {"load_model", "OnlineSession", "load_tracks", "write_tracks_video"} <= names
    for name in names:
        assert getattr(gmrw, name) is not None


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
