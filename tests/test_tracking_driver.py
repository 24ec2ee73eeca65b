"""gmrw.track, the one driver: a video read on demand (a FrameSource) tracks as the same video in
memory while only a bounded number of frames is ever held; each frame is encoded once and each
pair refined once; what it keeps follows one budget; bad input is named."""

from __future__ import annotations

import pytest
import torch

from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW
from gmrw.tracking import FrameSource, TensorFrames, track
from gmrw.tracking.flows import ModelFlows
from gmrw.tracking.modes import count_pairs

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
def test_a_frame_source_tracks_as_the_tensor(small_model, mode):
    video = torch.from_numpy(textured_video(7, 32, 40, seed=1))
    queries = torch.tensor([[0, 10.0, 12.0], [3, 20, 30], [6, 5, 5], [3, 31.5, 39.0]])
    expected, expected_occ = track(small_model, video[None], queries[None], mode=mode, pair_batch_size=4)
    tracks, occluded = track(small_model, TensorFrames(video), queries[None], mode=mode, pair_batch_size=4)
    assert torch.equal(tracks, expected) and torch.equal(occluded, expected_occ)
    # Without a cache, chained steps are recomputed in other batches of pairs, whose kernels may
    # round differently in the last bits.
    tracks, occluded = track(
        small_model, TensorFrames(video), queries[None], mode=mode, pair_batch_size=4, cache_bytes=0
    )
    assert torch.allclose(tracks, expected, atol=1e-4) and torch.equal(occluded, expected_occ)


def test_long_video_reads_few_frames_at_a_time(small_model):
    """Chained tracking over 24 frames without a cache: each read asks for at most one chunk's
    frames, the source's cache never holds more than its bound, and every frame is decoded about
    once per sweep."""
    video = torch.from_numpy(textured_video(24, 16, 24, seed=2))
    source = CountingFrames(video, cache_frames=8)
    queries = torch.tensor([[[0, 8.0, 8.0], [23, 4.0, 20.0]]])  # the sweeps cover every step
    tracks, occluded = track(small_model, source, queries, pair_batch_size=2, cache_bytes=0)
    assert tracks.shape == (1, 2, 24, 2) and occluded.shape == (1, 2, 24)
    assert max(len(r) for r in source.reads) <= 3  # 2 steps per chunk → frames t..t+2
    assert len(source._cache) <= 8
    decoded = sum(len(r) for r in source.reads)
    assert decoded <= 2 * 24, f"{decoded} frame decodes for 24 frames and two sweeps"
    expected, expected_occ = track(small_model, video[None], queries, pair_batch_size=2)
    assert torch.allclose(tracks, expected, atol=1e-4) and torch.equal(occluded, expected_occ)


def test_the_cache_budget_decides_what_is_recomputed(small_model, monkeypatch):
    """Chained steps both sweeps need are kept while they fit in ``cache_bytes``: all of them with
    the default budget (each pair refined once), none with 0 (the steps between the first and
    last query frame refined again, in other batches: the same tracks to float rounding)."""
    video = torch.from_numpy(textured_video(6, 16, 16, seed=3))
    queries = torch.tensor([[[0, 4.0, 4.0], [5, 8.0, 8.0]]])
    refined = []
    refine = small_model.refine
    monkeypatch.setattr(small_model, "refine", lambda a, b: refined.append(len(a)) or refine(a, b))
    kept = track(small_model, video[None], queries, pair_batch_size=1)
    assert sum(refined) == 5 == count_pairs("chained", queries, 6)
    refined.clear()
    dropped = track(small_model, video[None], queries, pair_batch_size=1, cache_bytes=0)
    assert sum(refined) == 5 + 5  # steps 0..4 lie between the query frames 0 and 5
    assert torch.allclose(kept[0], dropped[0], atol=1e-4) and torch.equal(kept[1], dropped[1])


def test_direct_mode_encodes_each_frame_once_and_refines_each_pair_once(small_model, monkeypatch):
    """Query frames 1 and 4 of 6: 2·5 reads from 9 unordered pairs ((1, 4) serves both), each
    frame encoded once (the query frames are kept), the same tracks as one pair at a time."""
    video = torch.from_numpy(textured_video(6, 32, 32, seed=5))
    queries = torch.tensor([[[1, 10.0, 12.0], [4, 20.0, 8.0], [1, 3.0, 30.0]]])
    encoded, refined = [], []
    encode, refine = small_model.encode, small_model.refine
    monkeypatch.setattr(small_model, "encode", lambda x: encoded.append(len(x)) or encode(x))
    monkeypatch.setattr(small_model, "refine", lambda a, b: refined.append(len(a)) or refine(a, b))
    tracks, occluded = track(
        small_model, video[None], queries, mode="direct", pair_batch_size=4, round_trip=2.0
    )
    assert sum(refined) == 9 == count_pairs("direct", queries, 6)
    assert sum(encoded) == 6
    encoded.clear()
    one, one_occ = track(small_model, video[None], queries, mode="direct", pair_batch_size=1, round_trip=2.0)
    assert torch.allclose(one, tracks, atol=1e-4) and torch.equal(one_occ, occluded)


def test_chained_pairs_share_encodings_and_one_refinement_serves_both_directions(small_model, monkeypatch):
    """Chained mode reads t → t+1 and t+1 → t: each frame is encoded once (the frame between two
    chunks too) and each pair refined once; the flows equal those of separate ``model.flow`` calls
    (the fallback for models without ``point_flow``)."""
    video = torch.from_numpy(textured_video(6, 32, 32, seed=6))
    queries = torch.tensor([[[0, 10.0, 12.0], [5, 20.0, 8.0]]])
    encoded, refined = [], []
    encode, refine = small_model.encode, small_model.refine
    monkeypatch.setattr(small_model, "encode", lambda x: encoded.append(len(x)) or encode(x))
    monkeypatch.setattr(small_model, "refine", lambda a, b: refined.append(len(a)) or refine(a, b))
    shared = track(small_model, video[None], queries, pair_batch_size=2)
    assert sum(refined) == 5, "each of the 5 consecutive pairs is refined once for both directions"
    assert sum(encoded) == 6, "each frame encoded once"

    class FlowOnly(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def flow(self, *args, **kwargs):
            return self.net.flow(*args, **kwargs)

    separate = track(FlowOnly(small_model), video[None], queries, pair_batch_size=2)
    assert torch.allclose(shared[0], separate[0], atol=1e-4) and torch.equal(shared[1], separate[1])


def test_memory_follows_the_model_size_not_the_video(small_model):
    """A 512×768 video tracked at short side 32: the flows a chained step keeps are refined
    features at the model's size (a few KiB), never the video-sized flow fields (3 MiB each)."""
    video = torch.from_numpy(textured_video(3, 512, 768, seed=7))[None]
    flows = ModelFlows(small_model, video, (32, 48), pair_batch_size=2)
    with torch.no_grad():
        step = flows([(0, 0, 1), (0, 1, 0)])
        moved = step.at([0, 1], torch.tensor([[[100.0, 200.0]], [[700.0, 500.0]]]))
    assert moved.shape == (2, 1, 2) and torch.isfinite(moved).all()
    assert step.nbytes == 2 * 32 * (32 // 4) * (48 // 4) * 4


def test_bad_input_is_named(small_model):
    video = torch.from_numpy(textured_video(4, 16, 16, seed=4))
    source = TensorFrames(video)
    with pytest.raises(ValueError, match="frame 4 is out of range, the video has frames 0..3"):
        track(small_model, source, torch.tensor([[[4, 2.0, 2.0]]]))
    with pytest.raises(ValueError, match="outside the 16x16 frame"):
        track(small_model, source, torch.tensor([[[0, 2.0, 17.0]]]))
    with pytest.raises(ValueError, match="at least 2"):
        track(small_model, TensorFrames(video[:1]), torch.tensor([[[0, 2.0, 2.0]]]))
    with pytest.raises(ValueError, match="needs a window"):
        track(small_model, source, torch.tensor([[[0, 2.0, 2.0]]]), method="weighted_argmax")
    with pytest.raises(ValueError, match=r"shape \(B, T, H, W, 3\)"):
        track(small_model, video, torch.tensor([[[0, 2.0, 2.0]]]))
    with pytest.raises(ValueError, match="pair_batch_size"):
        track(small_model, source, torch.tensor([[[0, 2.0, 2.0]]]), pair_batch_size=0)
