"""The scene engine, procedural textures, the training world and the real-photo benchmark:
exact ground truth, statistics, determinism, and photographs kept out of training."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmrw.data.photo_videos import PhotoTapVidDataset, photo_video, write_tapvid_pickle
from gmrw.data.scenes import Motion, TextureBank, apply_homography, degrade, render, sample_world_scene
from gmrw.data.scenes.textures import pink_noise, random_texture
from gmrw.data.synthetic import SyntheticTapVidDataset, SyntheticTrainDataset, render_video
from gmrw.data.tapvid import TapVidDataset


def bilinear(frames: torch.Tensor, t: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Colours of ``frames (T, 3, H, W)`` float at frames ``t (M,)``, positions ``xy (M, 2)`` → (M, 3)."""
    chosen = frames[t].float()
    h, w = chosen.shape[-2:]
    grid = (xy / torch.tensor([w - 1, h - 1]) * 2 - 1).float()[:, None, None]
    return F.grid_sample(chosen, grid, align_corners=True)[:, :, 0, 0]


def colour_errors(clean: torch.Tensor, queries, tracks, occluded, offset: float = 0.0):
    """Mean absolute colour difference (N, T) between each track's query pixel and its pixels along
    the ground-truth track (shifted by ``offset`` px)."""
    n, t = occluded.shape
    at_query = bilinear(clean, queries[:, 0].long(), queries[:, [2, 1]])
    along = bilinear(clean, torch.arange(t).repeat(n), (tracks + offset).reshape(-1, 2)).reshape(n, t, 3)
    return (along - at_query[:, None]).abs().mean(-1)


# ------------------------------------------------------------------------------------ the engine


def test_motion_is_a_homography_path_through_its_anchor():
    motion = Motion(
        anchor=(10.0, 20.0),
        center=(50.0, 40.0),
        velocity=(1.5, -0.5),
        acceleration=(0.1, 0.0),
        angle=0.3,
        spin=0.01,
        log_scale=0.2,
        zoom=0.01,
        tilt=(1e-3, -5e-4),
        tilt_rate=(1e-5, 0.0),
    )
    for t in (0.0, 3.0, 7.5):
        m = motion.matrix(t)
        centre = (50 + 1.5 * t + 0.05 * t * t, 40 - 0.5 * t)
        assert np.allclose(apply_homography(m, np.array([10.0, 20.0])), centre)
        assert abs(m[2, 0]) > 0  # a real perspective, not an affine
        points = np.random.default_rng(0).uniform(0, 40, size=(16, 2))
        back = apply_homography(np.linalg.inv(m), apply_homography(m, points))
        assert np.allclose(back, points, atol=1e-9)


def test_colour_along_a_true_track_stays_constant():
    bank = TextureBank(8, side=192, seed=3)
    video = render_video(5, bank, num_frames=8, height=96, width=96, num_points=48, degrade_strength=0.0)
    visible = ~video.occluded
    assert visible.sum() > 2 * len(visible)
    error = colour_errors(video.clean, video.query_points, video.target_points, video.occluded)
    # Up to bilinear interpolation of the texture, twice (render, and reading the frame here).
    assert error[visible].median() < 2.0, float(error[visible].median())
    # Off the track by 3 px the colour is clearly different: the check has teeth.
    shifted = colour_errors(video.clean, video.query_points, video.target_points, video.occluded, 3.0)
    assert shifted[visible].median() > 3 * error[visible].median()


def test_occlusion_flags_match_the_layer_order():
    bank = TextureBank(8, side=192, seed=4)
    frames = 8
    video = render_video(
        11, bank, num_frames=frames, height=96, width=96, num_points=64, degrade_strength=0.0
    )
    _, layer_map = render(video.scene, list(range(frames)), with_layers=True)  # (T, H, W)
    xy = video.target_points
    inside = (xy >= 0).all(-1) & (xy[..., 0] <= 95) & (xy[..., 1] <= 95)
    assert video.occluded[~inside].all(), "points outside the frame are occluded"
    n, t = torch.nonzero(inside, as_tuple=True)
    pixel = xy[n, t].round().long()
    rendered_occluded = layer_map[t, pixel[:, 1], pixel[:, 0]] > video.point_layers[n]
    # Exact up to the pixel a point is rounded to, next to an outline.
    agreement = (rendered_occluded == video.occluded[n, t]).float().mean()
    assert agreement > 0.97, float(agreement)
    assert video.occluded[inside].any(), "this video should show occlusion by objects"
    assert (video.point_layers == 0).any() and (video.point_layers > 0).any()


# ------------------------------------------------------------------------------------ textures


def test_pink_noise_has_the_asked_spectral_slope():
    field = pink_noise(np.random.default_rng(0), 256, 256, exponent=1.0)
    power = np.abs(np.fft.fft2(field - field.mean())) ** 2
    f = np.sqrt(np.fft.fftfreq(256)[:, None] ** 2 + np.fft.fftfreq(256)[None, :] ** 2)
    band = (f > 0.02) & (f < 0.3)  # clipping at the percentiles bends the extremes a little
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert -2.4 < slope < -1.6, slope  # 1/f amplitude: power ∝ f^-2


def test_random_textures_are_rich_and_deterministic():
    a = random_texture(np.random.default_rng(1), 128, 128)
    b = random_texture(np.random.default_rng(1), 128, 128)
    c = random_texture(np.random.default_rng(2), 128, 128)
    assert a.shape == (3, 128, 128) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() <= 255
    # Structure at every scale: strong gradients somewhere, and more than a few flat colours.
    gradient = np.abs(np.diff(a.mean(0), axis=1))
    assert np.percentile(gradient, 95) > 10
    assert np.unique(a.round().astype(np.uint8).reshape(3, -1), axis=1).shape[1] > 2000


def test_texture_bank_is_lazy_cached_and_seeded():
    bank = TextureBank(4, side=64, seed=9)
    assert not bank._cache
    first = bank[1]
    assert first.shape == (3, 64, 64) and first.dtype == torch.uint8
    assert bank[1] is first and bank[5] is first  # cached; indices wrap
    assert torch.equal(TextureBank(4, side=64, seed=9)[1], first)
    assert not torch.equal(TextureBank(4, side=64, seed=8)[1], first)
    variant = bank.draw(np.random.default_rng(0), side=32)
    assert variant.shape == (3, 32, 32) and variant.dtype == torch.float32


def test_degrade_changes_frames_and_strength_zero_does_not():
    bank = TextureBank(2, side=128, seed=0)
    scene = sample_world_scene(np.random.default_rng(0), 64, 64, bank)
    frames = render(scene, [0, 1, 2])
    assert torch.equal(degrade(frames, np.random.default_rng(0), 0.0), frames)
    out = degrade(frames, np.random.default_rng(0), 1.0)
    assert out.shape == frames.shape and 0 <= out.min() and out.max() <= 255
    assert (out - frames).abs().mean() > 1.0


def test_world_camera_moves_by_a_homography_of_the_asked_size():
    bank = TextureBank(2, side=320, seed=0)
    speeds = []
    for seed in range(12):
        scene = sample_world_scene(np.random.default_rng(seed), 160, 160, bank)
        centre = np.array([[79.5, 79.5]])
        world = scene.to_texture(0, centre, 0.0)
        speeds.append(np.linalg.norm(scene.to_frame(0, world, [1.0])[0, 0] - centre[0]))
    # Up to 1.5 % of the frame side a frame (2.4 px at 160 px), plus rotation/zoom about the anchor.
    assert max(speeds) < 6.0 and np.median(speeds) > 0.1


# ------------------------------------------------------------------------- photographs stay out


def test_training_world_never_touches_the_evaluation_photographs(monkeypatch):
    import skimage.data

    def refuse(*args, **kwargs):
        raise AssertionError("the training world read a scikit-image photograph")

    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "stereo_motorcycle", "brick"):
        monkeypatch.setattr(skimage.data, name, refuse)
    train = SyntheticTrainDataset(length=4, img_size1=64, img_size2=48, frame_size=64, texture_bank=2)
    assert train[0]["frames"].shape == (4, 3, 48, 48)
    val = SyntheticTapVidDataset(num_videos=1, num_frames=4, frame_size=64, num_points=4, texture_bank=2)
    assert val[0]["video"].shape == (4, 64, 64, 3)


# ------------------------------------------------------------------------- the photo benchmark


def test_photo_videos_have_exact_tracks_and_occlusion():
    video = photo_video(3, num_frames=8, size=128, num_points=40, jpeg_quality=100)
    assert video.video.shape == (8, 128, 128, 3) and video.video.dtype == torch.uint8
    clean = video.video.permute(0, 3, 1, 2).float()
    visible = ~video.occluded
    error = colour_errors(clean, video.query_points, video.target_points, video.occluded)
    shifted = colour_errors(clean, video.query_points, video.target_points, video.occluded, 3.0)
    assert error[visible].median() < 2.0, float(error[visible].median())
    assert shifted[visible].median() > 2 * error[visible].median()
    assert (video.point_layers > 0).any() and (video.point_layers == 0).any()
    again = photo_video(3, num_frames=8, size=128, num_points=40, jpeg_quality=100)
    assert torch.equal(again.video, video.video) and torch.equal(again.target_points, video.target_points)


def test_photo_pickle_reads_back_through_the_tapvid_reader(tmp_path):
    path = write_tapvid_pickle(tmp_path / "photos.pkl", num_videos=2, num_frames=6, size=64, num_points=12)
    with open(path, "rb") as handle:
        records = pickle.load(handle)
    assert len(records) == 2 and all(r["video"].shape == (6, 64, 64, 3) for r in records.values())
    reader = TapVidDataset(format="tapvid_davis", path=str(path), query_mode="first", resolution=(64, 64))
    memory = PhotoTapVidDataset(num_videos=2, num_frames=6, size=64, num_points=12)
    for i in range(2):
        a, b = reader[i], memory[i]
        assert a["name"] == b["name"]
        assert torch.equal(a["video"], b["video"])
        assert torch.allclose(a["query_points"], b["query_points"], atol=1e-4)
        assert torch.allclose(a["target_points"], b["target_points"], atol=1e-4)
        assert torch.equal(a["occluded"], b["occluded"])


def test_baselines_on_a_photo_video():
    pytest.importorskip("cv2", reason="opencv-python-headless (a dev dependency) is not installed")
    from gmrw.metrics.tapvid import compute_tapvid_metrics
    from gmrw.tracking.baselines import identity_tracks, lucas_kanade_tracks

    example = PhotoTapVidDataset(num_videos=1, num_frames=8, size=128, num_points=24)[0]
    scores = {}
    for name, (tracks, occluded) in {
        "identity": identity_tracks(8, example["query_points"]),
        "lk": lucas_kanade_tracks(example["video"], example["query_points"]),
    }.items():
        assert tracks.shape == example["target_points"].shape and occluded.shape == example["occluded"].shape
        m = compute_tapvid_metrics(
            example["query_points"][None],
            example["occluded"][None],
            example["target_points"][None],
            occluded[None],
            tracks[None],
            "first",
        )
        scores[name] = float(m["average_jaccard"][0])
    t = example["query_points"][:, 0].long()
    still = identity_tracks(8, example["query_points"])[0]
    assert torch.allclose(still[torch.arange(len(t)), t], example["query_points"][:, [2, 1]])
    assert scores["lk"] > scores["identity"] + 0.2, scores
    assert math.isfinite(scores["identity"])
