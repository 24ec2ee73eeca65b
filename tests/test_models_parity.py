"""GMRW reproduces the paper's implementation on the reference fixtures (64x64 inputs).

"Relative" below means max |ours - reference| / max |reference| over the tensor, so entries
near zero do not blow up the ratio. Re-running the reference with 2 threads instead of 1
moves its probabilities by 8.4e-5 (fixture README), which is the scale of the tolerances.
"""

from __future__ import annotations

import pytest
import torch

from gmrw.losses import walk_loss
from gmrw.models import GMRW, flush_denormals

# Biases of the 1x1 shortcut convs feed an InstanceNorm without affine, which removes any
# per-channel constant: their gradient is analytically zero and both sides hold rounding
# noise (the reference's norms are 4e-7 and 9e-7 against a total of 836).
ZERO_GRAD_PARAMS = {"backbone.layer2.0.downsample.0.bias", "backbone.layer3.0.downsample.0.bias"}


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


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


def test_transition_matches_reference(reference_model, transition_data, denormal_mode):
    with torch.no_grad():
        probs = reference_model.transition(transition_data["img1"], transition_data["img2"])
    assert probs.shape == (2, 256, 256)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 256), rtol=0, atol=1e-5)
    assert rel_err(probs, transition_data["probs"]) < 1e-4


@pytest.mark.parametrize("key", ["argmax", "weighted_sum", "weighted_argmax@5", "weighted_argmax@20"])
def test_flow_matches_reference(reference_model, transition_data, key):
    method, _, radius = key.partition("@")
    with torch.no_grad():
        flow = reference_model.flow(
            transition_data["img1"], transition_data["img2"], method, float(radius) if radius else None
        )
    reference = transition_data["flows"][key]
    assert flow.shape == reference.shape == (2, 2, 64, 64)
    # the argmax rows have margins >= 0.0023 in probability, 20x our largest deviation, so
    # argmax flows are exact
    tol = 0.0 if method == "argmax" else 1e-4
    assert rel_err(flow, reference) <= tol


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
        assert abs(out[key].item() / data[key].item() - 1) < 1e-4, key
    assert out["accuracy"].item() == data["accuracy"].item()  # 7 of 208 rows, exactly
    assert out["accuracy_rows_sampled"].item() == 0  # 256 cells: every masked row counted
    out["loss"].backward()
    for name, param in model.named_parameters():
        norm = param.grad.norm().item()
        expected = data["grad_norms"][name]
        if name in ZERO_GRAD_PARAMS:
            assert norm < 1e-5 and expected < 1e-5, name
        else:
            assert abs(norm / expected - 1) < 1e-3, (name, norm, expected)
