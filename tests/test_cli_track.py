"""``gmrw-track``: tracks + video from a real mp4, query parsing, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gmrw.cli.track import TrackInputError, main, parse_query, read_points_file
from gmrw.datatools.tiny import textured_video
from gmrw.tracking import scaled_size
from gmrw.tracking.coords import positions_to_video, queries_to_frames
from gmrw.video import write_video
from helpers import run_console

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_NET = {"feature_channels": 32, "num_transformer_layers": 2, "ffn_dim_expansion": 2}


def small_checkpoint(path: Path) -> Path:
    from gmrw.models import GMRW

    torch.manual_seed(0)
    torch.save({"state_dict": GMRW(**SMALL_NET).state_dict(), "config": dict(SMALL_NET)}, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("track")
    frames = textured_video(9, 48, 64, seed=5)
    return {
        "root": root,
        "frames": frames,
        "video": write_video(root / "clip.mp4", frames, fps=8),
        "checkpoint": small_checkpoint(root / "small.pt"),
    }


@pytest.mark.slow  # the console script in a subprocess
def test_console_writes_tracks_and_video(clip, tmp_path):
    from gmrw.video import import_decord

    decord = import_decord()

    out = tmp_path / "out"
    result = run_console(
        "gmrw-track",
        [
            str(clip["video"]),
            "--checkpoint",
            str(clip["checkpoint"]),
            "--grid",
            "3",
            "--query",
            "4,20.5,30",
            "--resize",
            "0",
            "--trail",
            "0",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["clip.tracks.mp4", "clip.tracks.npz"]
    data = np.load(out / "clip.tracks.npz")
    assert data["tracks"].shape == (10, 9, 2) and data["occluded"].shape == (10, 9)
    assert data["tracks"].dtype == np.float32 and data["occluded"].dtype == bool
    assert data["size"].tolist() == [48, 64] and float(data["fps"]) == pytest.approx(8)
    # queries come back as (t, y, x); each track passes through its own query.
    np.testing.assert_allclose(data["queries"][0], [4, 30, 20.5])
    for (t, y, x), track in zip(data["queries"], data["tracks"]):
        np.testing.assert_allclose(track[int(t)], [x, y], atol=1e-4)

    rendered = decord.VideoReader(str(out / "clip.tracks.mp4"))
    assert len(rendered) == 9 and rendered[0].shape == (48, 64, 3)
    original = decord.VideoReader(str(clip["video"]))
    for t in (0, 4, 8):
        drawn = rendered[t].asnumpy().astype(int)
        plain = original[t].asnumpy().astype(int)
        change = np.abs(drawn - plain).sum(-1)
        near = np.zeros(change.shape, bool)
        for (x, y), occ in zip(data["tracks"][:, t], data["occluded"][:, t]):
            xi, yi = int(round(x)), int(round(y))
            if 0 <= xi < 64 and 0 <= yi < 48:
                near[max(0, yi - 5) : yi + 6, max(0, xi - 5) : xi + 6] = True
                if not occ:  # a filled disc covers the track's own pixel
                    assert change[yi, xi] > 60, f"no marker at ({x:.1f}, {y:.1f}) in frame {t}"
        assert np.median(change[~near]) < 12, "pixels away from every marker changed"


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--query", "0,65,10"], "outside the 64x48 frame"),
        (["--query", "9,10,10"], "frame 9 is out of range, the video has frames 0..8"),
        (["--query", "1.5,10,10"], "must be an integer"),
        (["--query", "1,2"], "expected three numbers"),
        (["--grid-frame", "12"], "--grid-frame 12 is out of range"),
        (["--method", "weighted_argmax"], "needs a window radius"),
    ],
)
def test_bad_queries_are_named(clip, tmp_path, capsys, extra, message):
    code, err = _run([clip["video"], "--checkpoint", clip["checkpoint"], "--out", tmp_path, *extra], capsys)
    assert code == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_named(clip, tmp_path, capsys):
    out = tmp_path / "out"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    code, err = _run([garbage, "--out", out], capsys)
    assert code == 1 and "cannot read video" in err and "garbage.mp4" in err, err

    code, err = _run([tmp_path / "missing.mp4", "--out", out], capsys)
    assert code == 1 and "does not exist" in err, err

    one = write_video(tmp_path / "one.mp4", textured_video(1, 32, 32))
    code, err = _run([one, "--out", out], capsys)
    assert code == 1 and "1 frame(s); tracking needs at least 2" in err, err

    not_gmrw = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, not_gmrw)
    code, err = _run([clip["video"], "--checkpoint", not_gmrw, "--out", out], capsys)
    assert code == 1 and "resnet.pth" in err and "GMRW" in err, err

    code, err = _run([clip["video"], "--checkpoint", tmp_path / "nope.pth", "--out", out], capsys)
    assert code == 1 and "nope.pth: no such file" in err, err
    assert not out.exists() or list(out.iterdir()) == []


def test_points_files(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("t,x,y\n0, 1.5, 2\n# a comment\n3,4,5\n")
    np.testing.assert_array_equal(read_points_file(csv), [[0, 1.5, 2], [3, 4, 5]])
    txt = tmp_path / "p.txt"
    txt.write_text("0 1 2\n")
    np.testing.assert_array_equal(read_points_file(txt), [[0, 1, 2]])
    npy = tmp_path / "p.npy"
    np.save(npy, np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(read_points_file(npy), [[1, 2, 3]])
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1,2\nzero,1,2\n")
    with pytest.raises(TrackInputError, match="bad.csv:2"):
        read_points_file(bad)
    np.save(npy, np.zeros((2, 2)))
    with pytest.raises(TrackInputError, match="rows of t,x,y"):
        read_points_file(npy)
    assert parse_query("3,10.5,20") == (3.0, 10.5, 20.0)


def test_resize_and_coordinates_roundtrip():
    assert scaled_size(480, 854, 256) == (256, 456)
    assert scaled_size(48, 64, 0) == (48, 64)
    assert scaled_size(50, 66, 0) == (48, 64)  # multiples of 8
    points = torch.tensor([[0, 20.0, 10.0], [2, 479.0, 853.0]])  # (t, y, x)
    inside = queries_to_frames(points, (480, 854), (256, 456))
    assert inside[:, 0].tolist() == [0, 2]
    back = positions_to_video(inside[:, [2, 1]], (480, 854), (256, 456))
    torch.testing.assert_close(back, points[:, [2, 1]], atol=1e-3, rtol=0)


def lightning_checkpoint(path: Path, tracking: dict) -> Path:
    """A checkpoint as our trainer writes it, carrying how its model tracks."""
    from gmrw.models import GMRW

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in GMRW(**SMALL_NET).state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"net": dict(SMALL_NET), "tracking": tracking}}, path
    )
    return path


def test_dense_writes_compact_tracks_and_video(clip, tmp_path, capsys):
    """--dense 8 on the 64×48 clip at a checkpoint's processing size: 6×8 points from frame 2, the
    compact npz equals the Predictor's tracks (to float16), and a video of the same length."""
    from gmrw.tracking import Predictor, load_tracks
    from gmrw.video import import_decord

    checkpoint = lightning_checkpoint(tmp_path / "sized.ckpt", {"mode": "direct", "processing_size": 32})
    out = tmp_path / "out"
    code = main(
        [
            str(clip["video"]),
            "--checkpoint",
            str(checkpoint),
            "--dense",
            "8",
            "--grid-frame",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["clip.dense.mp4", "clip.dense.npz"]
    data = load_tracks(out / "clip.dense.npz")
    assert data["tracks"].shape == (6 * 8, 9, 2) and data["grid"].tolist() == [6, 8]
    expected, occluded = Predictor(checkpoint, "cpu")(clip["video"], dense=8, grid_query_frame=2)
    assert np.abs(data["tracks"] - expected.numpy()).max() <= 0.125
    assert np.array_equal(data["occluded"], occluded.numpy())
    np.testing.assert_array_equal(data["tracks"][:, 2], data["queries"][:, [2, 1]])
    assert len(import_decord().VideoReader(str(out / "clip.dense.mp4"))) == 9


def test_online_writes_the_offline_forward_tracks(clip, tmp_path, capsys):
    """--online feeds the file frame by frame: frame-0 queries follow the offline chained tracks;
    a query at frame 4 is NaN before it; the per-frame latency is printed."""
    from gmrw.tracking import Predictor

    out = tmp_path / "out"
    argv = [str(clip["video"]), "--checkpoint", str(clip["checkpoint"]), "--resize", "0", "--no-video"]
    code = main([*argv, "--query", "0,20,30", "--query", "4,40,10", "--online", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ms per frame" in captured.out
    data = np.load(out / "clip.tracks.npz")
    expected, _ = Predictor(clip["checkpoint"], "cpu", mode="chained", processing_size=0)(
        clip["video"], queries=data["queries"]
    )
    # Equal up to the float noise of batched encodings (bit for bit in test_tracking_online), which
    # this random model's steep flows amplify along the chain: tight early, looser by frame 8.
    assert np.abs(data["tracks"][0, :4] - expected[0, :4].numpy()).max() < 2e-2
    assert np.abs(data["tracks"][0] - expected[0].numpy()).max() < 1
    assert np.abs(data["tracks"][1, 4:] - expected[1, 4:].numpy()).max() < 1
    assert np.isnan(data["tracks"][1, :4]).all() and data["occluded"][1, :4].all()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--dense", "0"], "stride must be at least 1"),
        (["--dense", "4", "--grid", "3"], "give no --grid"),
        (["--dense", "4", "--online"], "do not go together"),
        (["--resize", "128", "--upsample", "2"], "not both"),
    ],
)
def test_bad_dense_and_online_options(clip, tmp_path, capsys, extra, message):
    code, err = _run([clip["video"], "--out", tmp_path / "out", *extra], capsys)
    assert code == 1 and message in err, err
    assert not (tmp_path / "out").exists()
