"""``gmrw.losses.walk_loss``: the objective over the network's two transitions, checked against a
dense computation from the definition (the N x N x N walk product the implementation avoids)."""

from __future__ import annotations

import pytest
import torch

from gmrw.losses import edge_aware_smoothness, walk_loss
from gmrw.models import GMRW
from gmrw.models.matching import flow_from_transition, resize_flow

SMALL = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}


def images(b: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 255


def clip(b: int = 1, size: int = 32):
    frames = torch.stack([images(b, size, seed=s) for s in range(4)], dim=1)
    affine = torch.tensor([[[0.9, 0.05, 0.1], [-0.05, 0.9, -0.1]]]).expand(b, 2, 3)
    return frames, affine


def test_walk_loss_encodes_three_frames_not_four():
    torch.manual_seed(0)
    model = GMRW()
    batch_sizes = []
    model.backbone.register_forward_hook(lambda m, inp, out: batch_sizes.append(inp[0].shape[0]))
    out = walk_loss(model, *clip(b=2), smoothness_weight=0.5)
    assert batch_sizes == [6]
    assert set(out) >= {"loss", "cycle_loss", "accuracy", "smoothness_loss"}
    assert all(v.dim() == 0 for v in out.values())
    torch.testing.assert_close(out["loss"], out["cycle_loss"] + 0.5 * out["smoothness_loss"])


def test_walk_loss_ignores_f2_prime():
    torch.manual_seed(0)
    model = GMRW()
    frames, affine = clip()
    a = walk_loss(model, frames, affine)["loss"]
    frames[:, 2] = 0.0
    torch.testing.assert_close(walk_loss(model, frames, affine)["loss"], a)


def test_activation_checkpointing_gives_the_same_gradients():
    frames, affine = clip()
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = GMRW(activation_checkpointing=flag)
        walk_loss(model, frames, affine, smoothness_weight=1.0)["loss"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_walk_loss_is_close_to_fp32():
    torch.manual_seed(0)
    model = GMRW()
    frames, affine = clip()
    fp32 = walk_loss(model, frames, affine, 0.5)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = walk_loss(model, frames, affine, 0.5)
    bf16["loss"].backward()
    assert bf16["loss"].dtype == torch.float32
    assert abs(bf16["loss"].item() / fp32.item() - 1) < 0.03
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_windowed_training_transitions_are_used_when_configured():
    torch.manual_seed(0)
    frames, affine = clip()
    plain = walk_loss(GMRW(), frames, affine)["cycle_loss"]
    torch.manual_seed(0)
    windowed = walk_loss(GMRW(flow_method="weighted_argmax", window=1.5), frames, affine)
    assert torch.isfinite(windowed["cycle_loss"]) and windowed["cycle_loss"] != plain


@pytest.mark.parametrize(
    "net", [{}, {"flow_method": "weighted_argmax", "window": 2.0}], ids=["plain", "windowed"]
)
def test_walk_loss_equals_the_dense_definition(net):
    """Loss, accuracy and smoothness from the walk matrix P = A1 @ A2 built in full, as the paper's code."""
    torch.manual_seed(0)
    model = GMRW(**SMALL, **net)
    frames, affine = clip(b=2)
    out = walk_loss(model, frames, affine, smoothness_weight=0.7)

    f1, f2, f1_back = frames[:, 0], frames[:, 1], frames[:, 3]
    a1, a2, (h, w) = model.walk_transitions(f1, f2, f1_back)
    walk = a1 @ a2  # (B, N, N)
    # Where the crop affine sends each cell: warp the cell grid (and a ones-field for the mask).
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    field = torch.stack((xs, ys, torch.ones_like(xs))).float()[None].expand(2, 3, h, w)
    grid = torch.nn.functional.affine_grid(affine.float(), [2, 3, h, w], align_corners=True)
    warped = torch.nn.functional.grid_sample(field, grid, mode="bilinear", align_corners=True)
    target = torch.round(warped[:, :2]).long()
    labels = (target[:, 1] * w + target[:, 0]).reshape(2, -1)
    mask = (warped[:, 2] > 0.5).reshape(2, -1).float()
    at_label = walk.gather(2, labels.clamp(0, h * w - 1)[..., None])[..., 0]
    cycle = -(torch.log(at_label + 1e-7) * mask).sum() / (mask.sum() + 1e-5)
    hits = ((walk.argmax(-1) == labels).float() * mask).sum()
    accuracy = 100 * hits / (mask.sum() + 1e-5)
    flows = torch.cat([flow_from_transition(a, h, w) for a in (a1, a2)])
    images = torch.cat((f1, f2)) * (2 / 255) - 1
    smooth = edge_aware_smoothness(resize_flow(flows, frames.shape[-2:]), images)

    torch.testing.assert_close(out["cycle_loss"], cycle, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["accuracy"], accuracy)
    torch.testing.assert_close(out["smoothness_loss"], smooth, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out["loss"], out["cycle_loss"] + 0.7 * out["smoothness_loss"])
    assert sorted(out) == ["accuracy", "accuracy_rows_sampled", "cycle_loss", "loss", "smoothness_loss"]
    assert out["accuracy_rows_sampled"] == 0


def test_smoothness_flag_off_gives_zero_and_no_gradient_path():
    torch.manual_seed(0)
    model = GMRW(**SMALL, smoothness_loss=False)
    out = walk_loss(model, *clip(), smoothness_weight=5.0)
    assert out["smoothness_loss"] == 0 and out["loss"] == out["cycle_loss"]


def test_frames_that_are_not_a_cycle_clip_are_refused():
    with pytest.raises(ValueError, match=r"expected frames \(B,4,3,H,W\)"):
        walk_loss(GMRW(**SMALL), torch.zeros(1, 3, 3, 32, 32), torch.zeros(1, 2, 3))
