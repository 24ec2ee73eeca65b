"""Tracking a video read on demand (gmrw.tracking.track_source): same tracks as gmrw.track, while
only a bounded number of frames is ever held."""

from __future__ import annotations

import pytest
import torch

from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW
from gmrw.tracking import FrameSource, TensorFrames, flow_cache_bytes, track, track_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()


class CountingFrames(FrameSource):
    """Serves a video from memory and records every read."""

    def __init__(self, video: torch.Tensor, cache_frames: int):
        super().__init__(video.shape[0], video.shape[1], video.shape[2], cache_frames)
        self.video = video
        self.reads: list[list[int]] = []

    def read(self, indices):
        self.reads.append(list(indices))
        return self.video[list(indices)]


@pytest.mark.parametrize("mode", ["chained", "direct"])
def test_track_source_equals_track(small_model, mode):
    video = torch.from_numpy(textured_video(7, 32, 40, seed=1))
    queries = torch.tensor([[0, 10.0, 12.0], [3, 20, 30], [6, 5, 5], [3, 31.5, 39.0]])
    expected, expected_occ = track(small_model, video[None], queries[None], mode=mode, pair_batch_size=4)
    for cache in (True, False):
        tracks, occluded = track_source(
            small_model, TensorFrames(video), queries, mode=mode, pair_batch_size=4, cache_flows=cache
        )
        assert torch.equal(tracks, expected[0]) and torch.equal(occluded, expected_occ[0])


def test_long_video_reads_few_frames_at_a_time(small_model):
    """Chained tracking over 40 frames: each read asks for at most one chunk's frames, the cache
    never holds more than its bound, and every frame is decoded about once per sweep."""
    video = torch.from_numpy(textured_video(40, 16, 24, seed=2))
    source = CountingFrames(video, cache_frames=8)
    queries = torch.tensor([[0, 8.0, 8.0], [39, 4.0, 20.0]])  # the sweeps cover every step
    tracks, occluded = track_source(small_model, source, queries, pair_batch_size=4, cache_flows=False)
    assert tracks.shape == (2, 40, 2) and occluded.shape == (2, 40)
    assert max(len(r) for r in source.reads) <= 3  # 2 steps per chunk → frames t..t+2
    assert len(source._cache) <= 8
    decoded = sum(len(r) for r in source.reads)
    assert decoded <= 2 * 40 + 2 * 20, f"{decoded} frame decodes for 40 frames and two sweeps"
    expected, expected_occ = track(small_model, video[None], queries[None], pair_batch_size=4)
    assert torch.allclose(tracks, expected[0], atol=1e-4) and torch.equal(occluded, expected_occ[0])


def test_flow_cache_is_skipped_when_too_big(small_model, monkeypatch):
    video = torch.from_numpy(textured_video(6, 16, 16, seed=3))
    queries = torch.tensor([[0, 4.0, 4.0], [5, 8.0, 8.0]])
    assert flow_cache_bytes(queries, 16, 16) == 5 * 2 * 2 * 16 * 16 * 4
    seen = []
    import gmrw.tracking.api as api

    real = api.chained_tracks

    def spy(*args):
        seen.append(args[-1])  # cache_flows
        return real(*args)

    monkeypatch.setattr(api, "chained_tracks", spy)
    track_source(small_model, TensorFrames(video), queries, flow_cache_limit=1000)
    track_source(small_model, TensorFrames(video), queries)
    assert seen == [False, True]


def test_track_source_rejects_bad_input(small_model):
    video = torch.from_numpy(textured_video(4, 16, 16, seed=4))
    with pytest.raises(ValueError, match="frame 4 is out of range, the video has frames 0..3"):
        track_source(small_model, TensorFrames(video), torch.tensor([[4, 2.0, 2.0]]))
    with pytest.raises(ValueError, match="outside the 16x16 frame"):
        track_source(small_model, TensorFrames(video), torch.tensor([[0, 2.0, 17.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        track_source(small_model, TensorFrames(video[:1]), torch.tensor([[0, 2.0, 2.0]]))
    with pytest.raises(ValueError, match="needs a window"):
        track_source(
            small_model, TensorFrames(video), torch.tensor([[0, 2.0, 2.0]]), method="weighted_argmax"
        )


def test_pairs_share_encodings_and_reverse_pairs_share_refinement(small_model, monkeypatch):
    """Chained mode asks for t → t+1 and t+1 → t: each frame is encoded once per chunk and each
    pair refined once, and the flows equal those of separate ``model.flow`` calls."""
    from gmrw.tracking import ModelPairFlows

    video = torch.from_numpy(textured_video(6, 32, 32, seed=6))
    queries = torch.tensor([[[0, 10.0, 12.0], [5, 20.0, 8.0]]])
    encoded, refined = [], []
    encode, refine = small_model.encode, small_model.refine
    monkeypatch.setattr(small_model, "encode", lambda x: encoded.append(len(x)) or encode(x))
    monkeypatch.setattr(small_model, "refine", lambda a, b: refined.append(len(a)) or refine(a, b))
    shared = track(small_model, video[None], queries, pair_batch_size=8)
    assert sum(refined) == 5, "each of the 5 consecutive pairs is refined once for both directions"
    assert sum(encoded) == 6 + 1, "frames encoded once per chunk (the chunk boundary frame twice)"
    monkeypatch.setattr(ModelPairFlows, "__call__", ModelPairFlows._one_by_one)
    separate = track(small_model, video[None], queries, pair_batch_size=8)
    assert torch.allclose(shared[0], separate[0], atol=1e-4) and torch.equal(shared[1], separate[1])
