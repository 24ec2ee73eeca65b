"""`gmrw-data check` through the installed console script."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from gmrw.datatools import tiny

GMRW_DATA = Path(sys.executable).parent / "gmrw-data"


# The tests marked slow run the installed console script in a subprocess.
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GMRW_DATA), *args],
        capture_output=True,
        text=True,
        timeout=120,
        # PYTHONPATH kept: a source checkout run against another install's scripts checks its own code
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )


@pytest.mark.slow
def test_check_kinetics_reports_planted_bad_files(tmp_path):
    files = tiny.write_tiny_kinetics(tmp_path / "k", videos_per_class=1, num_frames=12, size=(32, 32))
    out = _run("check", str(tmp_path / "k"), "--format", "kinetics")
    assert out.returncode == 0, out.stdout + out.stderr
    for bad in files["bad"]:
        assert f"BAD {bad}" in out.stdout
    assert "2 bad file(s)" in out.stdout
    assert "32x32" in out.stdout and "usable" in out.stdout
    strict = _run("check", str(tmp_path / "k"), "--format", "kinetics", "--strict")
    assert strict.returncode == 1


@pytest.mark.slow
def test_check_fails_on_unusable_folders(tmp_path):
    """Nothing readable: no table, one line on stderr saying why, exit 1."""
    out = _run("check", str(tmp_path / "missing"), "--format", "kinetics")
    assert out.returncode == 1 and "does not exist" in out.stderr and not out.stdout
    (tmp_path / "k" / "train" / "a").mkdir(parents=True)
    out = _run("check", str(tmp_path / "k"), "--format", "kinetics")
    assert out.returncode == 1 and "no videos found" in out.stderr
    (tmp_path / "tfds").mkdir()
    out = _run("check", str(tmp_path / "tfds"), "--format", "kubric")
    assert out.returncode == 1 and "movi_e/256x256" in out.stderr
    assert out.stderr.startswith("gmrw-data check: error: ") and len(out.stderr.splitlines()) == 1


@pytest.mark.slow
def test_check_tapvid_pickle_reports_a_broken_example(tmp_path):
    import pickle

    path = tiny.write_tapvid_pickle(tmp_path / "tapvid_davis.pkl", "davis", num_videos=3, num_frames=5)
    data = pickle.load(open(path, "rb"))
    data["video1"]["occluded"] = data["video1"]["occluded"][:, :3]  # tracks no longer match
    pickle.dump(data, open(path, "wb"))
    out = _run("check", str(path), "--format", "tapvid_davis")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BAD video1" in out.stdout and "1 bad file(s)" in out.stdout


@pytest.mark.slow
def test_check_tiny_kubric(tmp_path):
    tiny.write_tiny_movi_e(tmp_path / "tfds", num_train=2, num_validation=1, num_frames=4, size=(16, 16))
    out = _run("check", str(tmp_path / "tfds"), "--format", "kubric")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "16x16" in out.stdout and "train" in out.stdout and "validation" in out.stdout


@pytest.mark.slow
def test_check_tapvid_kubric_samples_tracks(tmp_path, capsys, monkeypatch):
    """TAP-Vid-Kubric from a movi_e folder: tracks are sampled from the first validation videos."""
    from gmrw.cli.data import main

    monkeypatch.setenv("COLUMNS", "200")
    tiny.write_tiny_movi_e(tmp_path / "tfds", num_train=1, num_validation=3, num_frames=4, size=(16, 16))
    capsys.readouterr()
    assert main(["check", str(tmp_path / "tfds"), "--format", "tapvid_kubric"]) == 0
    out = capsys.readouterr().out
    assert "validation" in out and "│ 3 " in out and "│ 2 " in out  # 3 videos, 2 sampled by default
    assert "points/video" in out and "occluded" in out and "bad files: 0" in out
    assert main(["check", str(tmp_path / "nothing"), "--format", "tapvid_kubric"]) == 1


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello world\nthis is a text file\n", "is not a pickle: it holds text starting 'hello world"),
        (b"", "is not a pickle: it holds nothing (an empty file)"),
        (pickle.dumps({"video0": list(range(1000))})[:200], "is a damaged or truncated pickle"),
    ],
    ids=["text", "empty", "truncated"],
)
def test_check_on_a_file_that_is_no_tapvid_pickle_is_one_line(tmp_path, capsys, content, says):
    """Not an unpickler's traceback or its "Memo value not found at index 101" inside a table: one
    line naming the file, what it holds and what the format expects; exit 1."""
    from gmrw.cli.data import main

    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert main(["check", str(path), "--format", "tapvid_davis"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"gmrw-data check: error: {path} ") and says in line
    assert "expected the file tapvid_davis.pkl" in line
