"""Online tracking (Predictor.online): the same positions as offline tracking from each query's
frame on, occlusion from the last pair's forward-backward check, queries added at any frame, and
memory that does not grow with the video."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW
from gmrw.tracking import Predictor
from gmrw.tracking.flows import ModelFlows

# numerics: make test-avx2 reruns these with the CPU capped at AVX2 (online vs offline compares float kernels).
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.numerics]


class FrameByFrame(torch.nn.Module):
    """A GMRW whose encoder sees one frame per call. Offline tracking encodes a chunk's frames in
    one batch, online one frame at a time; batched convolutions differ from single ones in the
    last float bits (~1e-5 here), so this wrapper makes the two comparable bit for bit."""

    def __init__(self, net: GMRW):
        super().__init__()
        self.net = net
        self.tracking_defaults: dict = {}

    def encode(self, images):
        return torch.cat([self.net.encode(image[None]) for image in images])

    def refine(self, src, dst):
        return self.net.refine(src, dst)

    def point_flow(self, *args):
        return self.net.point_flow(*args)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()


@pytest.fixture(scope="module")
def video():
    return textured_video(8, 48, 64, seed=3)


QUERIES = torch.tensor([[0, 10.0, 12.0], [0, 30.0, 40.0], [0, 47.0, 63.5]])
LATE = torch.tensor([[3, 20.0, 30.5]])


def run_online(session, video, late_at: int | None = None):
    """Step through ``video``; at frame ``late_at`` add LATE as (y, x) rows at the current frame."""
    positions, occluded = [], []
    for t, frame in enumerate(video):
        xy, occ = session.step(frame)
        if t == late_at:
            new = session.add_queries(LATE[:, 1:])
            assert new.tolist() == [session.num_queries - 1]
            xy = torch.cat((xy, LATE[:, [2, 1]]))
            occ = torch.cat((occ, torch.tensor([False])))
        elif late_at is not None and t < late_at:
            xy = torch.cat((xy, torch.full((1, 2), float("nan"))))
            occ = torch.cat((occ, torch.tensor([True])))
        positions.append(xy)
        occluded.append(occ)
    return torch.stack(positions, 1), torch.stack(occluded, 1)


def test_frame0_queries_equal_offline_chained_forward_tracks_bit_for_bit(net, video):
    predictor = Predictor(FrameByFrame(net), "cpu", mode="chained", processing_size=0, pair_batch_size=1)
    offline, _ = predictor(video, queries=QUERIES)
    session = predictor.online()
    session.add_queries(QUERIES)
    online, _ = run_online(session, video)
    assert torch.equal(online, offline)


#: One flow's float noise, px. Offline tracking encodes frames in batches, online one at a time;
#: batched convolutions round differently in the last bits (~1e-6 relative in the features), and a
#: flow, a softmax expectation over this 64-px frame's cells, moves by ~1e-4 px for it (measured
#: ≤ 1.4e-4 px on AVX-512 kernels and ≤ 2.7e-4 px with them capped to AVX2); 1e-3 leaves 3.7×.
STEP_NOISE = 1e-3


def test_online_equals_offline_within_float_noise(net, video):
    """With the plain model (batched encodings offline) and a query added later as (y, x) at the
    current frame. Direct: equal to offline tracks from the query frame on, within one flow's
    float noise. Chained: each online step is the offline flows' step from the online position,
    within one flow's float noise (teacher forcing), and the first step equals offline's. Whole
    chains are not compared: this random model's steep flows multiply a 1e-4 px difference about
    5× a step (2.6e-2 px by frame 7), so a chain's end measures the model's chaos and the CPU's
    kernels, not the tracker."""
    for mode in ("chained", "direct"):
        predictor = Predictor(net, "cpu", mode=mode, processing_size=0)
        offline, offline_occluded = predictor(video, queries=torch.cat((QUERIES, LATE)))
        session = predictor.online()
        session.add_queries(QUERIES)
        online, occluded = run_online(session, video, late_at=3)
        assert torch.isnan(online[3, :3]).all() and occluded[3, :3].all()
        assert torch.equal(online[3, 3], LATE[0, [2, 1]])
        if mode == "direct":
            assert torch.allclose(online[:3], offline[:3], atol=STEP_NOISE), mode
            assert torch.allclose(online[3, 3:], offline[3, 3:], atol=STEP_NOISE), mode
            assert torch.equal(occluded[:, 3:], offline_occluded[:, 3:])  # outside the frame, as offline
            continue
        assert torch.allclose(online[:3, :2], offline[:3, :2], atol=STEP_NOISE)
        assert torch.allclose(online[3, 3:5], offline[3, 3:5], atol=STEP_NOISE)
        flows = ModelFlows(net, torch.from_numpy(video)[None], predictor.model_size(48, 64))
        with torch.no_grad():
            for k in range(1, len(video)):
                active = torch.tensor([True, True, True, k > 3])
                before = online[active, k - 1][None]
                expected = before + flows([(0, k - 1, k)]).at([0], before)
                assert torch.allclose(online[active, k], expected[0], atol=STEP_NOISE), k


class ScriptedFlow(torch.nn.Module):
    """Frames carry their index as pixel value; flows are +1 px in x forward and -1 px backward,
    except the backward flow 4 → 3, which does not undo the forward one (+4 px)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def flow(self, src, dst, method="weighted_sum", window=None, size=None):
        out = torch.zeros(src.shape[0], 2, *size)
        for k, (s, d) in enumerate(zip(src[:, 0, 0, 0].round().tolist(), dst[:, 0, 0, 0].round().tolist())):
            out[k, 0] = (d - s) if (s, d) != (4, 3) else 4.0
        return out


def test_occluded_online_is_the_last_pairs_check():
    """The inconsistent pair (3, 4): online flags frame 4 only (the pair it just crossed); offline
    chained flags frames 3 and 4 (it also looks at the pair after each frame)."""
    video = np.stack([np.full((16, 24, 3), t, dtype=np.uint8) for t in range(7)])
    predictor = Predictor(ScriptedFlow(), "cpu", mode="chained", processing_size=0)
    query = torch.tensor([[0, 8.0, 2.0]])
    offline, offline_occluded = predictor(video, queries=query)
    session = predictor.online()
    session.add_queries(query)
    online, occluded = zip(*(session.step(frame) for frame in video))
    online, occluded = torch.stack(online, 1), torch.stack(occluded, 1)
    assert torch.equal(online, offline)
    assert online[0, :, 0].tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert occluded[0].tolist() == [False, False, False, False, True, False, False]
    assert offline_occluded[0].tolist() == [False, False, False, True, True, False, False]


def test_memory_does_not_grow_with_the_video(net):
    predictor = Predictor(net, "cpu", mode="chained", processing_size=0)
    session = predictor.online()
    session.add_queries(torch.tensor([[5.0, 5.0], [10.0, 20.0]]))  # (y, x) at frame 0
    frames = textured_video(30, 16, 24, seed=1)
    held = []
    for frame in frames:
        session.step(frame)
        held.append(session.memory_bytes())
    assert session.t == 29 and len(set(held[1:])) == 1, held
    # the previous frame's features and the 2 queries' state, nothing per frame
    assert held[-1] < 32 * (16 // 4) * (24 // 4) * 4 + 1000


def test_bad_online_input_is_named(net):
    session = Predictor(net, "cpu", processing_size=0).online()
    session.add_queries([[2, 3.0, 70.0]])  # checked once the first frame gives the size
    with pytest.raises(ValueError, match="outside the 64x48 frame"):
        session.step(np.zeros((48, 64, 3), np.uint8))
    session = Predictor(net, "cpu", processing_size=0).online()
    session.step(np.zeros((48, 64, 3), np.uint8))
    session.step(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="frame 0 has passed, the session is at frame 1"):
        session.add_queries([[0, 3.0, 4.0]])
    with pytest.raises(ValueError, match="outside the 64x48 frame"):
        session.add_queries([[5.0, -1.0]])
    with pytest.raises(ValueError, match="must be an integer"):
        session.add_queries([[2.5, 1.0, 1.0]])
    with pytest.raises(ValueError, match="the session's video is 64x48"):
        session.step(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        session.step(np.zeros((48, 64, 3), np.int32))
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        session.step(np.zeros((2, 48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(M, 3\) rows"):
        session.add_queries([[1.0]])
    assert session.add_queries([]).numel() == 0 and session.num_queries == 0
