"""GMRW reproduces the paper's implementation on the reference fixtures (64x64 inputs).

The matching read-outs (transition, flows) are held to float32 bounds derived from the data, not to
figures measured on one CPU: kernels accumulate in an order that depends on the instruction set and
the thread count (see benchmarks/reference_parity.py, which benchmarks/gpu_check.py shares). These
tests are marked ``numerics``: ``make test-avx2`` reruns them with the CPU capped at AVX2.
"""

from __future__ import annotations

import os

import pytest
import torch
from reference_parity import (
    FLOW_KEYS,
    GRAD_NORM_RATIO_TOLERANCE,
    LOSS_RATIO_TOLERANCE,
    ROW_SUM_TOLERANCE,
    ZERO_GRAD_PARAMS,
    ZERO_GRAD_TOLERANCE,
    decided_rows,
    flow_error,
    logit_budget,
    transition_error,
)

from gmrw.losses import walk_loss
from gmrw.models import GMRW, flush_denormals

pytestmark = pytest.mark.numerics


def test_the_instruction_set_cap_took_effect():
    """Under ``make test-avx2`` ATen must run its AVX2 kernels, or the rerun proves nothing."""
    cap = os.environ.get("ATEN_CPU_CAPABILITY")
    if not cap:
        pytest.skip("no instruction set cap (ATEN_CPU_CAPABILITY) in this run")
    assert torch.backends.cpu.get_cpu_capability() == cap.upper()


@pytest.fixture(scope="module")
def reference_model(fixtures_dir):
    model = GMRW()
    model.load_state_dict(torch.load(fixtures_dir / "model.pt")["state_dict"], strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def transition_data(fixtures_dir):
    return torch.load(fixtures_dir / "transition.pt")


def test_state_dict_keys_are_the_references(fixtures_dir):
    reference = torch.load(fixtures_dir / "model.pt")["state_dict"]
    ours = GMRW().state_dict()
    assert list(ours) == list(reference)
    assert all(ours[k].shape == v.shape for k, v in reference.items())


@pytest.fixture(scope="module")
def budget(reference_model, transition_data):
    """Δ: how far float32 lets two computations of one logit differ (reference_parity.logit_budget)."""
    with torch.no_grad():
        features = reference_model.pair_features(transition_data["img1"], transition_data["img2"])
    return logit_budget(*features, reference_model.temperature)


def test_transition_matches_reference(reference_model, transition_data, budget, denormal_mode):
    with torch.no_grad():
        probs = reference_model.transition(transition_data["img1"], transition_data["img2"])
    assert probs.shape == (2, 256, 256)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 256), rtol=0, atol=ROW_SUM_TOLERANCE)
    assert transition_error(probs, transition_data["probs"], budget) <= 1.0


@pytest.mark.parametrize("key", FLOW_KEYS)
def test_flow_matches_reference(reference_model, transition_data, budget, key):
    method, _, radius = key.partition("@")
    with torch.no_grad():
        flow = reference_model.flow(
            transition_data["img1"], transition_data["img2"], method, float(radius) if radius else None
        )
    reference = transition_data["flows"][key]
    assert flow.shape == reference.shape == (2, 2, 64, 64)
    # argmax flows are exact wherever float32 decides the argmax; a weighted flow stays within its
    # per-pixel bound (reference_parity.flow_bound)
    assert flow_error(flow, reference, transition_data["probs"], key, budget) <= 1.0


def test_float32_near_ties_are_few(transition_data, budget):
    """The fixtures' rows are decided by float32 but for a handful of near-ties (1 of 512 with the
    budget of these weights): the flow checks above stay checks, not a tolerance that excuses rows."""
    decided = decided_rows(transition_data["probs"], budget)
    assert decided.shape == (2, 256) and (~decided).sum() <= 4


def test_the_float32_bounds_still_catch_small_real_differences(reference_model, transition_data, budget):
    """The bounds are not vacuous: softmax logits 0.1 % too large fail the transition check, and a
    0.05 px nudge of one flow pixel fails the flow check."""
    images = transition_data["img1"], transition_data["img2"]
    temperature = reference_model.temperature
    reference_model.temperature = 128**0.5 / 1.001
    try:
        with torch.no_grad():
            sharper = reference_model.transition(*images)
    finally:
        reference_model.temperature = temperature
    assert transition_error(sharper, transition_data["probs"], budget) > 1.0
    for key in ("argmax", "weighted_sum"):
        reference = transition_data["flows"][key]
        nudged = reference.clone()
        nudged[0, 0, 30, 30] += 0.05
        assert flow_error(reference, reference, transition_data["probs"], key, budget) == 0.0
        assert flow_error(nudged, reference, transition_data["probs"], key, budget) > 1.0


def test_flow_size_argument_rescales(reference_model, transition_data):
    img1, img2 = transition_data["img1"][:1], transition_data["img2"][:1]
    with torch.no_grad():
        full = reference_model.flow(img1, img2)
        cells = reference_model.flow(img1, img2, size=(16, 16))
        small = reference_model.flow(img1, img2, size=(32, 48))
    assert small.shape == (1, 2, 32, 48)
    # corners are aligned, so corner values are the cell flow times the size ratio
    torch.testing.assert_close(full[..., 0, 0], cells[..., 0, 0] * 4, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(small[0, :, -1, -1], cells[0, :, -1, -1] * torch.tensor([3.0, 2.0]))


@pytest.fixture(params=[False, True], ids=["denormals", "flushed"])
def denormal_mode(request):
    """Run a test with and without flushing denormals (what gmrw's CPU entry points turn on)."""
    flush_denormals(request.param)
    yield request.param
    flush_denormals(False)


def test_walk_loss_values_and_gradients_match_reference(fixtures_dir, denormal_mode):
    data = torch.load(fixtures_dir / "walk_loss.pt")
    model = GMRW()
    model.load_state_dict(torch.load(fixtures_dir / "model.pt")["state_dict"], strict=True)
    model.train()
    out = walk_loss(model, data["frames"], data["affine_b2f"], data["smoothness_weight"])
    for key in ("loss", "cycle_loss", "smoothness_loss"):
        assert out[key].dim() == 0
        assert abs(out[key].item() / data[key].item() - 1) < LOSS_RATIO_TOLERANCE, key
    assert out["accuracy"].item() == data["accuracy"].item()  # 7 of 208 rows, exactly
    assert out["accuracy_rows_sampled"].item() == 0  # 256 cells: every masked row counted
    out["loss"].backward()
    for name, param in model.named_parameters():
        norm = param.grad.norm().item()
        expected = data["grad_norms"][name]
        if name in ZERO_GRAD_PARAMS:
            assert norm < ZERO_GRAD_TOLERANCE and expected < ZERO_GRAD_TOLERANCE, name
        else:
            assert abs(norm / expected - 1) < GRAD_NORM_RATIO_TOLERANCE, (name, norm, expected)
