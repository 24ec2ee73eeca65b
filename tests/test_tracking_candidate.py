"""Direct tracking with the chained candidate (gmrw.tracking.modes.direct_tracks_with_chained_candidate):
where the direct match jumps to a look-alike, the candidate moved on from the previous frame is
kept because it comes back to the query; two agreeing candidates are visible even when the round
trip fails; the first step is plain direct mode; the driver refines what count_pairs says."""

from __future__ import annotations

import pytest
import torch

from gmrw.datatools.tiny import textured_video
from gmrw.models import GMRW
from gmrw.tracking import TrackingOptions, track
from gmrw.tracking.flows import PairFlows
from gmrw.tracking.modes import AGREEMENT_FRACTION, count_pairs, direct_tracks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VELOCITY = torch.tensor([2.0, 1.0])  # (dx, dy) px a frame: every point moves with the camera


class FieldFlows(PairFlows):
    """Flows of directed pairs from a rule ``flow(src, dst, xy) -> (M, N, 2)``."""

    def __init__(self, pairs, rule):
        self.pairs, self.rule = list(pairs), rule

    def at(self, index, xy):
        return torch.stack([self.rule(*self.pairs[i][1:], xy[k]) for k, i in enumerate(index)])

    @property
    def nbytes(self) -> int:
        return 0


def flows_with(rule, asked=None):
    def pair_flows(pairs):
        if asked is not None:
            asked.append(list(pairs))
        return FieldFlows(pairs, rule)

    return pair_flows


def true_flow(src, dst, xy):
    return (dst - src) * VELOCITY.expand_as(xy)


def look_alike_from_the_query(jump: float, from_frame: int = 3):
    """The true motion, except that the direct match of query frame 0 to frames ≥ ``from_frame``
    lands ``jump`` px to the right of the truth (a look-alike)."""

    def rule(src, dst, xy):
        flow = true_flow(src, dst, xy)
        if src == 0 and dst >= from_frame:
            flow = flow + torch.tensor([jump, 0.0])
        return flow

    return rule


def truth(queries, num_frames):
    start = torch.stack((queries[..., 2], queries[..., 1]), dim=-1)
    steps = torch.arange(num_frames).float() - queries[..., 0:1]
    return start.unsqueeze(2) + steps.unsqueeze(-1) * VELOCITY


QUERIES = torch.tensor([[[0, 20.0, 10.0], [0, 40.0, 30.0]]])  # (t, y, x), both at frame 0
SIZE = (100, 140)


def test_the_chained_candidate_replaces_a_direct_match_that_jumped():
    rule = look_alike_from_the_query(jump=30.0)
    plain, plain_visible = direct_tracks(QUERIES, 6, SIZE, flows_with(rule), round_trip=16.0)
    tracks, visible = direct_tracks(
        QUERIES, 6, SIZE, flows_with(rule), round_trip=16.0, chained_candidate=True
    )
    expected = truth(QUERIES, 6)
    # Plain direct mode follows the look-alike from frame 3 on and calls it occluded there.
    assert torch.allclose(plain[..., 3:, 0], expected[..., 3:, 0] + 30.0)
    assert not plain_visible[..., 3:].any() and plain_visible[..., :3].all()
    # The candidate moved on from frame t-1 comes back to the query: kept, and visible.
    assert torch.allclose(tracks, expected)
    assert visible.all()


def test_agreeing_candidates_are_visible_when_the_round_trip_fails():
    """The flow back to the query frame misses by 20 px everywhere (past a 16 px round trip), but
    the direct match and the chained candidate land on the same place: visible (plain direct mode:
    occluded), unless the candidates disagree by more than AGREEMENT_FRACTION × round_trip."""

    def bad_way_back(shift):
        def rule(src, dst, xy):
            flow = true_flow(src, dst, xy)
            if dst == 0:
                flow = flow + torch.tensor([20.0, 0.0])
            if src == 0 and dst >= 3:
                flow = flow + torch.tensor([shift, 0.0])
            return flow

        return rule

    _, plain_visible = direct_tracks(QUERIES, 6, SIZE, flows_with(bad_way_back(0.0)), round_trip=16.0)
    assert not plain_visible[..., 1:].any()
    tracks, visible = direct_tracks(
        QUERIES, 6, SIZE, flows_with(bad_way_back(0.0)), round_trip=16.0, chained_candidate=True
    )
    assert torch.allclose(tracks, truth(QUERIES, 6))
    assert visible[..., 2:].all()  # from the second step on the two routes agree
    assert not visible[..., 1].any()  # the first step has one route only: the round trip decides
    apart = AGREEMENT_FRACTION * 16.0 + 1.0
    _, visible = direct_tracks(
        QUERIES, 6, SIZE, flows_with(bad_way_back(apart)), round_trip=16.0, chained_candidate=True
    )
    assert not visible[..., 3].any() and visible[..., 2].all()


def test_the_first_step_and_backwards_are_direct_mode_where_it_is_right():
    """Query frames 2 and 0: the step next to each query frame is the direct match itself, and on
    the true motion (where every route agrees) the tracks equal plain direct mode's, before the
    query frame too."""
    queries = torch.tensor([[[2, 20.0, 10.0], [0, 40.0, 30.0]]])
    plain, plain_visible = direct_tracks(queries, 5, SIZE, flows_with(true_flow), round_trip=4.0)
    tracks, visible = direct_tracks(
        queries, 5, SIZE, flows_with(true_flow), round_trip=4.0, chained_candidate=True
    )
    assert torch.allclose(tracks, plain) and torch.equal(visible, plain_visible)
    assert torch.allclose(tracks, truth(queries, 5))


def test_without_a_round_trip_only_leaving_the_frame_occludes():
    rule = look_alike_from_the_query(jump=30.0)
    tracks, visible = direct_tracks(QUERIES, 6, (100, 26), flows_with(rule), chained_candidate=True)
    assert torch.allclose(tracks, truth(QUERIES, 6))  # still the candidate that comes back
    assert torch.equal(visible, tracks[..., 0] < 26)  # x runs past the 26 px wide frame


def test_each_step_asks_for_its_pairs_in_one_call():
    asked = []
    queries = torch.tensor([[[1, 20.0, 10.0], [4, 40.0, 30.0]]])
    flows = flows_with(true_flow, asked)
    direct_tracks(queries, 6, SIZE, flows, pairs_per_chunk=8, round_trip=8.0, chained_candidate=True)
    assert len(asked) == 4  # steps k = 1 … 4 (frame 1 reaches 5, frame 4 reaches 0)
    first = {tuple(p) for p in asked[0]}
    assert first == {(0, 1, 2), (0, 2, 1), (0, 1, 0), (0, 0, 1), (0, 4, 5), (0, 5, 4), (0, 4, 3), (0, 3, 4)}
    assert (0, 2, 3) in {tuple(p) for p in asked[1]}  # query frame 1's points hop from frame 2 to 3


def unordered(pairs):
    return {(b, min(s, t), max(s, t)) for b, s, t in pairs}


def test_smaller_chunks_hold_fewer_pairs_refine_none_twice_and_track_the_same():
    queries = torch.tensor([[[1, 20.0, 10.0], [2, 30.0, 12.0], [4, 40.0, 30.0], [4, 50.0, 60.0]]])
    rule = look_alike_from_the_query(jump=30.0)
    whole, chunked = [], []
    expected = direct_tracks(queries, 7, SIZE, flows_with(rule, whole), 64, 8.0, chained_candidate=True)
    got = direct_tracks(queries, 7, SIZE, flows_with(rule, chunked), 1, 8.0, chained_candidate=True)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert len(chunked) > len(whole)
    # A call holds one walk's pairs (≤ 2), or walks that read a common pair, held together so that
    # the pair is refined once: at k = 2 frame 2's walk to 4 and frame 4's to 2 share (2, 4), and
    # frame 4's hop from 3 shares (2, 3) with frame 1's walk to 3: four pairs.
    sizes = [len(unordered(call)) for call in chunked]
    assert max(sizes) == 4 < max(len(unordered(call)) for call in whole)
    assert sorted(p for call in chunked for p in unordered(call)) == sorted(
        p for call in whole for p in unordered(call)
    )


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return GMRW(feature_channels=32, num_transformer_layers=2, ffn_dim_expansion=2).eval()


def test_the_driver_refines_what_count_pairs_says(small_model, monkeypatch):
    video = torch.from_numpy(textured_video(6, 32, 32, seed=5))
    queries = torch.tensor([[[1, 10.0, 12.0], [4, 20.0, 8.0], [1, 3.0, 30.0]]])
    refined = []
    refine = small_model.refine
    monkeypatch.setattr(small_model, "refine", lambda a, b: refined.append(len(a)) or refine(a, b))
    tracks, occluded = track(
        small_model, video[None], queries, mode="direct", round_trip=2.0, chained_candidate=True
    )
    assert sum(refined) == count_pairs("direct", queries, 6, chained_candidate=True)
    assert count_pairs("direct", queries, 6) < sum(refined) <= 2 * count_pairs("direct", queries, 6) + 2
    assert tracks.shape == (1, 3, 6, 2) and occluded.shape == (1, 3, 6)
    at_query = torch.tensor([[1, 4, 1]])
    assert not occluded[0, torch.arange(3), at_query[0]].any()


def test_the_option_is_checked_and_resolved():
    with pytest.raises(ValueError, match="chained_candidate"):
        TrackingOptions(chained_candidate="yes")
    model = torch.nn.Module()
    model.tracking_defaults = {"mode": "direct", "chained_candidate": True}
    from gmrw.tracking import resolve_options

    assert resolve_options(model).chained_candidate is True
    assert resolve_options(model, chained_candidate=False).chained_candidate is False


def biased_both_ways(bias: float):
    """The true motion, every flow off by ``bias`` px in x: a match lands ``bias`` px right of the
    truth and the flow back from it ``bias`` px further, so its round trip misses by ``2·bias``."""

    def rule(src, dst, xy):
        return true_flow(src, dst, xy) + torch.tensor([bias, 0.0])

    return rule


@pytest.mark.parametrize("chained_candidate", [False, True])
def test_round_trip_correction_splits_a_small_miss_and_leaves_a_large_one(chained_candidate):
    """With errors alike both ways, half the miss is the match's own error: the correction puts
    the match on the truth. A round trip that fails (a miss of ``round_trip`` or more) is left alone."""
    expected = truth(QUERIES, 6)
    small = direct_tracks(
        QUERIES,
        6,
        SIZE,
        flows_with(biased_both_ways(1.0)),
        round_trip=16.0,
        chained_candidate=chained_candidate,
        round_trip_correction=True,
    )[0]
    assert torch.allclose(small, expected, atol=1e-5)
    plain = direct_tracks(
        QUERIES,
        6,
        SIZE,
        flows_with(biased_both_ways(1.0)),
        round_trip=16.0,
        chained_candidate=chained_candidate,
    )[0]
    assert torch.allclose(plain[:, :, 1:], expected[:, :, 1:] + torch.tensor([1.0, 0.0]), atol=1e-5)
    large = direct_tracks(
        QUERIES,
        6,
        SIZE,
        flows_with(biased_both_ways(9.0)),
        round_trip=16.0,  # misses 18 px
        chained_candidate=chained_candidate,
        round_trip_correction=True,
    )[0]
    assert torch.allclose(large[:, :, 1:], expected[:, :, 1:] + torch.tensor([9.0, 0.0]), atol=1e-5)


def test_round_trip_correction_needs_a_round_trip():
    with pytest.raises(ValueError, match="round_trip_correction needs round_trip"):
        direct_tracks(QUERIES, 3, SIZE, flows_with(true_flow), round_trip_correction=True)
    with pytest.raises(ValueError, match="round_trip_correction needs round_trip"):
        TrackingOptions(mode="direct", round_trip_correction=True)
    with pytest.raises(ValueError, match="true or false"):
        TrackingOptions(mode="direct", round_trip=8.0, round_trip_correction=1)
