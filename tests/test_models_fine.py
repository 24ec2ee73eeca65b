"""The learned sub-cell step (gmrw.models.fine) and its fine walk (gmrw.losses.fine_walk)."""

from __future__ import annotations

import pytest
import torch

from gmrw.checkpoint import load_model
from gmrw.data.crops import CycleCropper
from gmrw.losses import walk_loss
from gmrw.losses.fine_walk import bilinear_targets, fine_labels, fine_walk_loss
from gmrw.models import GMRW
from gmrw.models.fine import (
    LocalMaps,
    coarse_flow_at,
    fine_flow,
    fine_match_points,
    fine_match_settings,
    grid_positions,
    window_centers,
    window_offsets,
)
from gmrw.models.matching import resize_flow
from gmrw.tracking import track

FINE = {"channels": 8, "radius": 2}


def tiny(fine_match=FINE, seed: int = 0) -> GMRW:
    torch.manual_seed(seed)
    return GMRW(feature_channels=32, num_transformer_layers=1, fine_match=fine_match)


def images(b: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 255


def clips(n: int, seed: int = 0, size: int = 48, crop: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` cycle clips (n, 4, 3, crop, crop) from smooth random images, and their affines."""
    g = torch.Generator().manual_seed(seed)
    cropper = CycleCropper(size, crop)
    frames, affines = [], []
    for i in range(n):
        base = torch.rand(1, 3, size // 4, size // 4, generator=g)
        image = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)
        pair = (image.clamp(0, 1) * 255).expand(2, -1, -1, -1)
        clip = cropper(pair, generator_seed=seed * 1000 + i)
        frames.append(clip.frames)
        affines.append(clip.affine_b2f)
    return torch.stack(frames), torch.stack(affines)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_settings_are_completed_and_checked():
    assert fine_match_settings(None) is None
    assert fine_match_settings({"radius": 2}) == {
        "channels": 32,
        "radius": 2,
        "weight": 1.0,
        "coarse_window": 2.0,
        "temperature": 0.07,
        "pixel_channels": 0,
        "pixel_radius": 2,
    }
    with pytest.raises(ValueError, match="unknown fine_match"):
        fine_match_settings({"radious": 2})
    with pytest.raises(ValueError, match="radius >= 1"):
        fine_match_settings({"radius": 0})


def test_step_off_has_no_new_parameters_and_the_step_on_loads_strictly(tmp_path):
    assert not any("fine" in key for key in GMRW().state_dict())
    model = tiny()
    assert any(key.startswith("fine_features.") for key in model.state_dict())
    # our Lightning checkpoint layout: the settings travel in hyper_parameters["net"]
    net = {"feature_channels": 32, "num_transformer_layers": 1, "fine_match": dict(FINE)}
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": net}}, tmp_path / "fine.ckpt")
    loaded = load_model(tmp_path / "fine.ckpt")
    assert loaded.fine_match == model.fine_match
    x = images(2)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.eval().encode(x))


def test_encode_carries_the_fine_map_and_refine_passes_it_through():
    model = tiny().eval()
    x = images(2, 40)  # 40 px: 10 coarse cells, 20 fine
    with torch.no_grad():
        encoded = model.encode(x)
        assert encoded.shape == (2, 32 + 4 * 8, 10, 10)
        coarse, maps = model.encode_parts(x)
        assert maps.half.shape == (2, 8, 20, 20) and maps.full is None
        split = model.split_features(encoded)
        assert torch.equal(split[0], coarse) and torch.equal(split[1].half, maps.half)
        # the tracking code indexes, concatenates and repeats encodings along dim 0
        src, dst = model.refine(encoded[[0]], encoded[[1, 0]][:1].repeat(1, 1, 1, 1))
        assert src.shape == encoded[:1].shape
        assert torch.equal(src[:, 32:], encoded[:1, 32:]) and torch.equal(dst[:, 32:], encoded[1:, 32:])
        plain = model.transformer(coarse[:1], coarse[1:], model.attn_splits)
        assert torch.equal(src[:, :32], plain[0]) and torch.equal(dst[:, :32], plain[1])
        flow = model.flow_from_features(src, dst, "weighted_argmax", 2.0, (40, 40))
        assert flow.shape == (1, 2, 40, 40) and torch.isfinite(flow).all()
        assert model.flow_from_features(src, dst).shape == (1, 2, 20, 20)  # size None: fine cells


def test_step_off_is_bit_identical_to_the_model_without_it():
    """Same weights: the coarse encoding, transitions and the flows with the step disabled equal
    those of the paper's model exactly (the same operations in the same order)."""
    with_step = tiny()
    without = GMRW(feature_channels=32, num_transformer_layers=1)
    without.load_state_dict({k: v for k, v in with_step.state_dict().items() if not k.startswith("fine_")})
    x, y = images(1, 32, 1), images(1, 32, 2)
    with torch.no_grad():
        assert torch.equal(with_step.encode(x)[:, :32], without.encode(x))
        assert torch.equal(with_step.transition(x, y), without.transition(x, y))
        walk_a, walk_b = with_step.walk_transitions(x, y, x), without.walk_transitions(x, y, x)
        assert torch.equal(walk_a.first, walk_b.first) and torch.equal(walk_a.second, walk_b.second)
        with_step.fine_match_enabled = False
        for method, window in (("weighted_sum", None), ("weighted_argmax", 2.0)):
            assert torch.equal(with_step.flow(x, y, method, window), without.flow(x, y, method, window))


def test_fine_match_finds_a_known_shift():
    """Distinct features shifted by (2, -1) cells: a coarse guess one cell off is moved to the
    true target."""
    # one-hot features (one channel per cell) at temperature 0.03: the true cell scores 33, the
    # others 0, so they keep < 25·e^-33 of the softmax
    src = torch.eye(144).reshape(1, 144, 12, 12)
    dst = torch.roll(src, shifts=(-1, 2), dims=(2, 3))  # dst(x + 2, y - 1) = src(x, y)
    grid = grid_positions(12, 12)[None]
    guess = grid + torch.tensor([1.0, 0.0])  # one cell off
    refined = fine_match_points(src, dst, None, guess, radius=2, temperature=0.03)
    truth = grid + torch.tensor([2.0, -1.0])
    interior = ((truth >= 0) & (truth <= 11)).all(-1)  # roll wraps around at the border
    assert (refined - truth)[interior].abs().max() < 1e-3
    # the same points given explicitly (bilinear sampling at integer positions is exact)
    assert torch.allclose(fine_match_points(src, dst, grid, guess, 2, 0.03), refined, atol=1e-5)


def test_fine_flow_is_the_point_step_on_the_upsampled_coarse_flow():
    g = torch.Generator().manual_seed(1)
    src, dst = torch.randn(2, 8, 10, 12, generator=g), torch.randn(2, 8, 10, 12, generator=g)
    coarse = torch.randn(2, 2, 5, 6, generator=g)
    flow = fine_flow(src, dst, coarse, radius=1, temperature=0.5)
    assert flow.shape == (2, 2, 10, 12)
    grid = grid_positions(10, 12)[None].expand(2, -1, -1)
    targets = fine_match_points(src, dst, None, grid + coarse_flow_at(coarse, grid), 1, 0.5)
    assert torch.allclose(flow.flatten(2).transpose(1, 2), targets - grid)
    # a uniform coarse flow of (1, -0.5) cells is 2 and -1 fine cells everywhere
    uniform = torch.tensor([1.0, -0.5]).view(1, 2, 1, 1).expand(2, 2, 5, 6)
    assert torch.allclose(coarse_flow_at(uniform, grid), torch.tensor([2.0, -1.0]))
    # the refined target stays within the window: the coarse target's nearest cell on the map, ± r
    centers = window_centers(grid + coarse_flow_at(coarse, grid), 10, 12)
    assert ((targets - centers).abs() <= 1 + 1e-5).all()


def test_fine_labels_follow_the_crop_affine():
    grid = grid_positions(16, 16)[None]
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert torch.allclose(fine_labels(identity, grid, (32, 32)), grid, atol=1e-5)
    # a shift of 4 model pixels (normalised 8/31 on a 32 px crop) is 2 fine cells
    shift = torch.tensor([[[1.0, 0.0, 8.0 / 31.0], [0.0, 1.0, 0.0]]])
    assert torch.allclose(fine_labels(shift, grid, (32, 32)), grid + torch.tensor([2.0, 0.0]), atol=1e-4)


def test_bilinear_targets_are_distributions_whose_mean_is_the_label():
    g = torch.Generator().manual_seed(0)
    labels = torch.rand(2, 50, 2, generator=g) * 10 + 1
    centers = labels.round().long()
    targets = bilinear_targets(labels, centers, radius=2)
    assert torch.allclose(targets.sum(-1), torch.ones(2, 50))
    mean = centers.float() + targets @ window_offsets(2).float()
    assert torch.allclose(mean, labels, atol=1e-5)


def test_walk_loss_with_the_step_adds_the_fine_walk_and_its_gradients():
    model = tiny().train()
    frames, affines = clips(2)
    out = walk_loss(model, frames, affines)
    assert {"fine_loss", "fine_accuracy", "fine_error", "fine_rows"} <= set(out)
    assert torch.isfinite(out["loss"]) and out["fine_loss"] >= 0
    plain = walk_loss(tiny(None), frames, affines)
    assert set(plain) == {"loss", "cycle_loss", "accuracy", "smoothness_loss", "accuracy_rows_sampled"}
    out["fine_loss"].backward()
    head = model.fine_features.conv2.weight.grad
    assert head is not None and torch.isfinite(head).all() and head.abs().sum() > 0
    assert model.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0  # the step trains layer1 too
    assert model.transformer.layers[0].self_attn.q_proj.weight.grad is None  # not the global match


def test_fine_walk_rows_need_a_coarse_walk_that_comes_home():
    """With uniform coarse hops nothing is counted; with hops that send each cell to its label
    every row whose label lies on the map is, and the loss is finite."""
    b, c, h, w = 1, 8, 8, 8
    g = torch.Generator().manual_seed(0)
    fine = tuple(LocalMaps(torch.randn(b, c, 2 * h, 2 * w, generator=g), None) for _ in range(3))
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    n = h * w
    uniform = torch.full((b, n, n), 1.0 / n)
    out = fine_walk_loss(fine, uniform, uniform, (h, w), identity, (32, 32), 2, 2.0, 0.1)
    eye = torch.eye(n)[None]
    home = fine_walk_loss(fine, eye, eye, (h, w), identity, (32, 32), 2, 2.0, 0.1)
    assert out["rows"] < home["rows"] and home["rows"] > 0.9
    assert torch.isfinite(home["loss"])


def one_hop_error(model: GMRW, frames: torch.Tensor, affines: torch.Tensor) -> float:
    """Mean distance (fine cells) between the step's match f1 → f1' and the crop affine's truth,
    from coarse guesses one cell off in x and y: what the fine step must fix."""
    with torch.no_grad():
        _, maps = model.encode_parts(torch.cat((frames[:, 0], frames[:, 3])))
        f1, f3 = maps.half.chunk(2)
        b, _, h2, w2 = f1.shape
        grid = grid_positions(h2, w2).expand(b, -1, -1)
        truth = fine_labels(affines, grid, tuple(frames.shape[-2:]))
        settings = model.fine_match
        refined = fine_match_points(f1, f3, None, truth + 1.0, settings["radius"], settings["temperature"])
        inside = (truth >= 1).all(-1) & (truth[..., 0] <= w2 - 2) & (truth[..., 1] <= h2 - 2)
        return float((refined - truth).norm(dim=-1)[inside].mean())


@pytest.mark.slow
def test_a_tiny_run_learns_the_fine_walk():
    """A few optimiser steps on a handful of clips: the fine walk's loss falls, and the step's
    one-hop match lands closer to the truth than before training."""
    model = tiny().train()
    frames, affines = clips(4, seed=3, size=64, crop=48)
    before = one_hop_error(model, frames, affines)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        out = walk_loss(model, frames, affines)
        losses.append(float(out["fine_loss"].detach()))
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])
    assert one_hop_error(model, frames, affines) < 0.8 * before


def test_resize_of_a_fine_flow_keeps_pixels():
    """A fine flow of 1 cell is 2 model pixels; at the frame size it is scaled like any flow."""
    flow = torch.ones(1, 2, 16, 16)
    assert torch.allclose(resize_flow(flow, (32, 32)), torch.full((1, 2, 32, 32), 2.0))


def test_point_read_out_in_pixels_is_the_step_on_fine_cells():
    """``GMRW.fine_match_points`` at the model's own size (model pixel = 2 x fine cell) is
    :func:`fine_match_points` on fine cells, scaled; disabled, it returns the coarse targets."""
    model = tiny().eval()
    x = images(2, 32)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        src, dst = model.refine(*model.encode(x).chunk(2))
        fine_src = model.split_features(src)[1].half
        fine_dst = model.split_features(dst)[1].half
        points = torch.rand(1, 10, 2, generator=g) * 31
        targets = points + torch.randn(1, 10, 2, generator=g) * 3
        refined = model.fine_match_points(src, dst, points, targets, (32, 32))
        settings = model.fine_match
        expected = 2 * fine_match_points(
            fine_src, fine_dst, points / 2, targets / 2, settings["radius"], settings["temperature"]
        )
        assert torch.allclose(refined, expected, atol=1e-5)
        model.fine_match_enabled = False
        assert torch.equal(model.fine_match_points(src, dst, points, targets, (32, 32)), targets)


def test_point_flow_with_the_step_is_the_point_read_out_of_the_coarse_match():
    """What tracking reads (``point_flow``, frames of another size than the model's input): the
    coarse flow at the points, then each coarse match refined by ``fine_match_points``."""
    model = tiny().eval()
    x = images(2, 32)
    g = torch.Generator().manual_seed(6)
    size = (45, 37)  # (H, W) of the frames the points live in
    points = torch.rand(1, 9, 2, generator=g) * torch.tensor([36.0, 44.0])
    with torch.no_grad():
        src, dst = model.refine(*model.encode(x).chunk(2))
        on = model.point_flow(src, dst, points, "weighted_argmax", 2.0, size)
        model.fine_match_enabled = False
        coarse = model.point_flow(src, dst, points, "weighted_argmax", 2.0, size)
        model.fine_match_enabled = True
        expected = model.fine_match_points(src, dst, points, points + coarse, size) - points
    assert on.shape == (1, 9, 2)
    assert torch.allclose(on, expected, atol=1e-5)
    assert not torch.allclose(on, coarse, atol=1e-3)  # the step moved the matches


def test_point_flow_with_the_step_off_is_bit_identical_to_the_model_without_it():
    with_step = tiny()
    without = GMRW(feature_channels=32, num_transformer_layers=1).eval()
    without.load_state_dict({k: v for k, v in with_step.state_dict().items() if not k.startswith("fine_")})
    with_step.eval().fine_match_enabled = False
    x = images(2, 32, 3)
    points = torch.rand(1, 7, 2, generator=torch.Generator().manual_seed(7)) * 31
    with torch.no_grad():
        a = with_step.point_flow(
            *with_step.refine(*with_step.encode(x).chunk(2)), points, "argmax", None, (32, 32)
        )
        b = without.point_flow(*without.refine(*without.encode(x).chunk(2)), points, "argmax", None, (32, 32))
    assert torch.equal(a, b)


def test_track_reads_the_step_through_point_flow():
    """gmrw.track needs no change: with the step on its tracks differ from the coarse-only ones."""
    model = tiny().eval()
    video = images(3, 32, 8).permute(0, 2, 3, 1).unsqueeze(0)  # (1, T, H, W, 3)
    queries = torch.tensor([[[0.0, 10.0, 12.0], [0.0, 20.5, 7.25]]])  # (t, y, x)
    with torch.no_grad():
        on, _ = track(model, video, queries, mode="direct")
        model.fine_match_enabled = False
        off, _ = track(model, video, queries, mode="direct")
    assert on.shape == off.shape == (1, 2, 3, 2)  # (B, N, T, xy)
    assert torch.equal(on[:, :, 0], off[:, :, 0])  # the query frame is the query
    assert not torch.allclose(on[:, :, 1:], off[:, :, 1:], atol=1e-3)


PIXEL = {"channels": 8, "radius": 2, "pixel_channels": 4, "pixel_radius": 1}


def test_the_full_resolution_level_refines_to_pixels():
    """With ``pixel_channels`` the encoding carries a (n, Cp, 4h, 4w) map too; the flow is read on
    the full-resolution grid, and its point read-out matches it at the pixels."""
    model = tiny(PIXEL).eval()
    x = images(2, 40)
    with torch.no_grad():
        encoded = model.encode(x)
        assert encoded.shape == (2, 32 + 4 * 8 + 16 * 4, 10, 10)
        coarse, maps = model.encode_parts(x)
        assert maps.full.shape == (2, 4, 40, 40)
        split = model.split_features(encoded)[1]
        assert torch.equal(split.half, maps.half) and torch.equal(split.full, maps.full)
        src, dst = model.refine(*encoded.chunk(2))
        flow = model.flow_from_features(src, dst, "weighted_argmax", 2.0)
        assert flow.shape == (1, 2, 40, 40)  # size None: the full-resolution grid
        # points at the model's own size (model pixel = 2 x fine cell = full-resolution pixel):
        # the 1/2-resolution step, then the full-resolution one around its result
        g = torch.Generator().manual_seed(5)
        points = torch.rand(1, 12, 2, generator=g) * 39
        targets = points + torch.randn(1, 12, 2, generator=g) * 3
        settings = model.fine_match
        half = 2 * fine_match_points(
            maps.half[:1], maps.half[1:], points / 2, targets / 2, settings["radius"], settings["temperature"]
        )
        expected = fine_match_points(
            maps.full[:1], maps.full[1:], points, half, settings["pixel_radius"], settings["temperature"]
        )
        assert torch.allclose(
            model.fine_match_points(src, dst, points, targets, (40, 40)), expected, atol=1e-4
        )


def test_fine_walk_with_the_full_resolution_level_trains_both_levels():
    model = tiny(PIXEL).train()
    frames, affines = clips(2)
    out = walk_loss(model, frames, affines)
    assert {"fine_pixel_loss", "fine_pixel_error"} <= set(out)
    out["loss"].backward()
    for head in (model.fine_features.conv2, model.pixel_features.mix, model.pixel_features.conv1):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
