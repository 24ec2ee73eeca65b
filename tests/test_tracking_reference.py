"""Tracking parity with the paper's evaluation loop (track.pt).

Flows → tracks is checked on the reference's own stored flows (bit-identical); the full pipeline
(model + tracking) on the reference weights. Our flows differ from the reference's in the last
float bits (summation order in the matching; see the model parity tests), which direct mode
passes on as it is: tracks within 1e-2 px. Chained mode compounds them: the random-init model's
flow field is so steep (flows of up to 60–80 px on a 64-px frame) that following it over 7 frames
amplifies a step's difference many times, by an amount that depends on the CPU's kernels and the
thread count (measured, largest error over the tracks: ×1 weighted_argmax@5, 2e-3 px with
AVX-512 kernels and 2.5e-2 px with them capped to AVX2, from one-step errors of 3e-4 and 4e-4 px;
×2 weighted_sum, 0.38 and 5 px from 1.2e-3 and 3.6e-3 px; medians ≤ 5e-4 px). There, chaining itself is proven on the stored flows,
and the pipeline is checked one step at a time: our flows, read at the reference's own positions,
must reach the reference's next position (teacher forcing) within one flow's float difference;
the median track must agree, and visibility exactly.
"""

from __future__ import annotations

import pytest
import torch

from gmrw.tracking import TrackingOptions, track
from gmrw.tracking.flows import DenseFlows, ModelFlows
from gmrw.tracking.modes import chained_tracks, count_pairs, direct_tracks

# Float-kernel sensitive: make test-avx2 reruns this module with the CPU capped at AVX2.
pytestmark = pytest.mark.numerics

CHAINED_KEYS = [
    "chained/uf1/argmax",
    "chained/uf1/weighted_sum",
    "chained/uf1/weighted_argmax@5",
    "chained/uf1/weighted_argmax@20",
    "chained/uf2/argmax",
    "chained/uf2/weighted_sum",
    "chained/uf2/weighted_argmax@5",
    "chained/uf2/weighted_argmax@20",
]


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return torch.load(fixtures_dir / "track.pt")


@pytest.fixture(scope="module")
def model(fixtures_dir):
    from gmrw.checkpoint import load_model

    return load_model(fixtures_dir / "model.pt")


def _stored_chained(flows):
    forward, backward = flows["forward"], flows["backward"]  # backward[t] is t+1 → t

    def pair_flows(pairs):
        return DenseFlows(torch.stack([forward[b, s] if d == s + 1 else backward[b, d] for b, s, d in pairs]))

    return pair_flows


@pytest.mark.parametrize("key", CHAINED_KEYS)
@pytest.mark.parametrize("steps,cache", [(1, None), (3, 0)])
def test_chained_from_reference_flows(ref, key, steps, cache):
    queries = ref["query_points"].clone()
    tracks, visible = chained_tracks(
        queries, 8, (64, 64), _stored_chained(ref["flows"][key]), steps_per_chunk=steps, cache_bytes=cache
    )
    assert torch.equal(tracks, ref["tracks"][key])
    assert torch.equal(visible, ref["visible"][key])
    assert torch.equal(queries, ref["query_points"])


def test_direct_from_reference_flows(ref):
    stored = ref["flows"]["direct/uf1/weighted_sum"]
    rows = stored["query_frames"].tolist()
    requested = []

    def pair_flows(pairs):
        requested.extend(pairs)
        return DenseFlows(torch.stack([stored["direct"][rows.index(s), d] for _, s, d in pairs]))

    queries = ref["query_points"].clone()
    tracks, visible = direct_tracks(queries, 8, (64, 64), pair_flows, pairs_per_chunk=5)
    assert torch.equal(tracks, ref["tracks"]["direct/uf1/weighted_sum"])
    assert torch.equal(visible, ref["visible"]["direct/uf1/weighted_sum"])
    assert torch.equal(queries, ref["query_points"])
    # 8 distinct query frames × 7 other frames; the s → s pair is never needed.
    assert len(requested) == len(set(requested)) == 56 and all(s != d for _, s, d in requested)


#: One flow's difference from the reference's, px: the model parity tests bound our flows to the
#: reference's at ~1.5e-4 of the largest flow (measured on AVX2 kernels), and these flows reach
#: 60–80 px: 1.2e-2 px. Measured one-step errors: ≤ 1.2e-3 px (AVX-512), ≤ 3.6e-3 px (AVX2).
ONE_STEP = 2e-2


def _options(key):
    mode, uf, method = key.split("/")
    window = None
    if "@" in method:
        method, window = method.split("@")
        window = float(window)
    return {"mode": mode, "upsample_factor": int(uf[2:]), "method": method, "window": window}


def _check_against_reference(model, ref, key, pair_batch_size=8):
    queries = ref["query_points"].clone()
    options = _options(key)
    tracks, occluded = track(model, ref["video"], queries, pair_batch_size=pair_batch_size, **options)
    assert torch.equal(queries, ref["query_points"]), "track() modified the caller's queries"
    assert tracks.shape == (1, 24, 8, 2) and occluded.dtype == torch.bool
    assert torch.equal(~occluded, ref["visible"][key])
    error = (tracks - ref["tracks"][key]).norm(dim=-1)
    if key.startswith("chained"):
        assert error.median() < 1e-3
        assert _one_step_error(model, ref, key, options) < ONE_STEP
    else:
        assert error.max() < 1e-2


def _one_step_error(model, ref, key, options) -> float:
    """Largest distance between the reference's position at frame t±1 and its position at t moved
    by our flow (t → t±1, the direction the chain walks from each query frame)."""
    size = TrackingOptions(upsample_factor=options["upsample_factor"]).model_size(64, 64)
    flows = ModelFlows(model, ref["video"], size, options["method"], options["window"])
    reference = ref["tracks"][key][0]  # (N, T, 2)
    frames = ref["query_points"][0, :, 0].long()
    worst = 0.0
    with torch.no_grad():
        for t in range(reference.shape[1]):
            for step in (1, -1):
                if not 0 <= t + step < reference.shape[1]:
                    continue
                # forward from frames at/after the query, backward from frames at/before it
                walkers = frames <= t if step == 1 else frames >= t
                if not walkers.any():
                    continue
                moved = (
                    reference[walkers, t] + flows([(0, t, t + step)]).at([0], reference[walkers, t][None])[0]
                )
                worst = max(worst, (moved - reference[walkers, t + step]).norm(dim=-1).max().item())
    return worst


@pytest.mark.parametrize("key", ["chained/uf1/weighted_sum", "direct/uf1/weighted_argmax@5"])
def test_track_matches_reference(model, ref, key):
    _check_against_reference(model, ref, key, pair_batch_size=16)


@pytest.mark.slow
@pytest.mark.parametrize(
    "key",
    [
        k
        for m in ("chained", "direct")
        for u in (1, 2)
        for k in (
            f"{m}/uf{u}/argmax",
            f"{m}/uf{u}/weighted_sum",
            f"{m}/uf{u}/weighted_argmax@5",
            f"{m}/uf{u}/weighted_argmax@20",
        )
    ],
)
def test_track_matches_reference_all_keys(model, ref, key):
    _check_against_reference(model, ref, key)


def test_model_called_on_needed_pairs_only(ref, monkeypatch):
    seen = []

    class Counting(torch.nn.Module):
        def flow(self, src, dst, method="weighted_sum", window=None, size=None):
            seen.append(src.shape[0])
            return torch.zeros(src.shape[0], 2, *size)

    video = ref["video"]
    queries = ref["query_points"]
    track(Counting(), video, queries, mode="chained", pair_batch_size=4)
    assert sum(seen) == 2 * 7 and max(seen) <= 4  # each step's forward and backward flow, once
    seen.clear()
    track(Counting(), video, queries, mode="direct", pair_batch_size=10)
    assert sum(seen) == 8 * 7 and max(seen) <= 10  # each query frame to each other frame, once
    # A model with a shared refinement refines each unordered pair once: 8·7/2 of them.
    assert count_pairs("direct", queries, 8) == 28 and count_pairs("chained", queries, 8) == 7
    seen.clear()
    track(Counting(), video, queries[:, :3], mode="direct")  # query frames 4, 7, 5
    assert sum(seen) == 3 * 7
    assert count_pairs("direct", queries[:, :3], 8) == 3 * 7 - 3  # (4, 5), (4, 7), (5, 7) serve both ways
