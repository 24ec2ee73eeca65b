"""``gmrw-data download gmrw_weights`` against a loopback mirror (tests/fake_publisher.py): the zip of
the paper's checkpoints, built here from a seeded GMRW saved the way the reference's training saves
(DDP ``module.`` keys, an ``argparse.Namespace`` of its arguments, ``global_step``).

Every run is bounded: retries are few with millisecond backoff and every socket has a 5 s timeout.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from fake_publisher import FakePublisher, Faults
from gmrw.checkpoint import load_model
from gmrw.cli.data import main
from gmrw.datatools.download.http import RetryPolicy
from gmrw.datatools.download.progress import Reporter
from gmrw.datatools.download.registry import GMRW_WEIGHTS_URL, WEIGHTS
from gmrw.datatools.download.runner import Options
from gmrw.datatools.download.weights import download_weights, summary_lines
from gmrw.models import GMRW

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05, connect_timeout=5, read_timeout=5)
ZIP_PATH = "/mirror/gmrw_weights.zip"
#: What each released file is, as the reference's scripts would have recorded it.
RUNS = {
    "kubric_73k.pth": ("train_kubric", "kubric", 73_000, 0),
    "kinetics_144k.pth": ("train_kinetics_finetune", "kinetics", 144_000, 1),
}


def paper_checkpoint(exp_name: str, dataset_type: str, step: int, seed: int) -> tuple[bytes, dict]:
    """A checkpoint in the layout of the reference's ``train_*.py`` on rank 0 of a torchrun job, and
    the weights in it (without the ``module.`` prefix)."""
    torch.manual_seed(seed)
    weights = GMRW().state_dict()
    args = argparse.Namespace(
        exp_name=exp_name,
        dataset_type=dataset_type,
        temp=0,
        compute_flow_method="weighted_sum",
        window_threshold=5,
        smoothness_loss=True,
        smoothness_edge_constant=150.0,
        device=torch.device("cuda", 0),
        world_size=4,
    )
    buffer = io.BytesIO()
    torch.save(
        {
            "model": {f"module.{k}": v for k, v in weights.items()},
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 3,
            "args": args,
            "global_step": step,
        },
        buffer,
    )
    return buffer.getvalue(), weights


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip as Dropbox serves a shared folder: the files at its top level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def damage_member(path: Path, name: str) -> None:
    """Flip one byte in the middle of a stored member's data (its CRC-32 no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def released(tmp_path_factory, one_torch_thread):
    """The two checkpoints (bytes and weights), built once."""
    files, weights = {}, {}
    for name, (run, data, step, seed) in RUNS.items():
        files[name], weights[name] = paper_checkpoint(run, data, step, seed)
    return files, weights


@pytest.fixture
def www(tmp_path, released):
    """The mirror's folder, holding the zip of both checkpoints (a test may break it)."""
    root = tmp_path / "www"
    write_zip(root / ZIP_PATH.lstrip("/"), released[0])
    return root


def _run(target: Path, server: FakePublisher, **options):
    stream = io.StringIO()
    opts = Options(mirror=f"{server.url}{ZIP_PATH}", policy=FAST, **options)
    summary = download_weights("gmrw_weights", target, opts, Reporter(stream, interval=0.0))
    return summary, stream.getvalue()


def test_the_registry_has_the_papers_link_as_one_zip():
    spec = WEIGHTS["gmrw_weights"]
    assert spec.url == GMRW_WEIGHTS_URL and spec.url.startswith("https://www.dropbox.com/scl/fo/")
    assert spec.url.endswith("&dl=1")  # Dropbox serves a shared folder as one zip only with dl=1
    assert set(spec.files) == {"kubric_73k.pth", "kinetics_144k.pth"}


def test_clean_download_keeps_each_checkpoint_and_names_its_data_and_step(www, released, tmp_path, capsys):
    target = tmp_path / "weights"
    with FakePublisher(www) as server:
        code = main(["download", "gmrw_weights", str(target), "--mirror", f"{server.url}{ZIP_PATH}"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert [r.path for r in server.gets()] == [ZIP_PATH]
        # A rerun finds the marker and the files: nothing is fetched, the report is the same.
        server.requests.clear()
        again = main(["download", "gmrw_weights", str(target), "--mirror", f"{server.url}{ZIP_PATH}"])
        rerun = capsys.readouterr().out
        assert again == 0 and server.requests == []
    assert "2 checkpoint(s) kept, 0 missing or not kept" in out
    lines = {line.split(":")[0]: line for line in out.splitlines() if ".pth:" in line}
    assert "Kubric MOVi-E (run train_kubric), step 73000" in lines["kubric_73k.pth"]
    assert "Kinetics-700-2020 (run train_kinetics_finetune), step 144000" in lines["kinetics_144k.pth"]
    assert "4.35 M parameters" in lines["kubric_73k.pth"]
    assert f"use: gmrw-eval eval_preset=kubric_davis_x4 paths.weights={target}" in out
    assert "already complete" in rerun and lines["kubric_73k.pth"] in rerun
    # Kept byte for byte, loadable, the zip and the scratch gone, the marker naming each file.
    for name, data in released[0].items():
        assert (target / name).read_bytes() == data
        model = load_model(target / name)
        for key, value in released[1][name].items():
            assert torch.equal(model.state_dict()[key], value), key
    assert not list((target / ".download").glob("*.zip*"))
    assert not any((target / ".download" / "tmp").iterdir())
    marker = json.loads((target / ".download" / "gmrw_weights.done").read_text())
    assert {c["name"]: c["step"] for c in marker["checkpoints"]} == {"kubric_73k.pth": 73000,
                                                                      "kinetics_144k.pth": 144000}  # fmt: skip


def test_a_cut_connection_resumes_with_range(www, tmp_path):
    size = (www / ZIP_PATH.lstrip("/")).stat().st_size
    cut = size // 3
    with FakePublisher(www, Faults(drop_after={ZIP_PATH: cut})) as server:
        summary, log = _run(tmp_path / "w", server)
    assert summary.ok, log
    assert [g.range for g in server.gets()] == [None, f"bytes={cut}-"]
    assert summary.transferred == size  # the second request sent only the rest
    assert "retry 1/3" in log
    assert {c.name for c in summary.checkpoints if c.ok} == set(RUNS)


def test_an_interrupted_download_is_continued_by_the_next_run(www, tmp_path):
    """A .part left by a killed run (here: written by hand) is continued, not restarted."""
    target = tmp_path / "w"
    data = (www / ZIP_PATH.lstrip("/")).read_bytes()
    part = target / ".download" / "gmrw_weights.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    with FakePublisher(www) as server:
        summary, log = _run(target, server)
    assert summary.ok, log
    assert [g.range for g in server.gets()] == ["bytes=1000-"]
    assert summary.transferred == len(data) - 1000


def test_a_damaged_member_is_named_not_kept_and_the_other_is_kept(www, tmp_path, capsys):
    damage_member(www / ZIP_PATH.lstrip("/"), "kinetics_144k.pth")
    target = tmp_path / "w"
    with FakePublisher(www) as server:
        code = main(
            [
                "download",
                "gmrw_weights",
                str(target),
                "--mirror",
                f"{server.url}{ZIP_PATH}",
                "--keep-archives",
            ]
        )
        out = capsys.readouterr().out
    assert code == 1
    assert "NOT KEPT kinetics_144k.pth: damaged in the zip (Bad CRC-32" in out
    assert not (target / "kinetics_144k.pth").exists()
    assert load_model(target / "kubric_73k.pth") is not None
    assert not (target / ".download" / "gmrw_weights.done").exists()
    # A damaged zip is not kept, even with --keep-archives: the rerun fetches it again.
    assert not (target / ".download" / "gmrw_weights.zip").exists()
    assert "run the same command again" in out


def test_a_member_that_is_not_a_gmrw_checkpoint_is_named(www, released, tmp_path):
    buffer = io.BytesIO()
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 3)}}, buffer)
    write_zip(www / ZIP_PATH.lstrip("/"), {"kubric_73k.pth": released[0]["kubric_73k.pth"],
                                           "kinetics_144k.pth": buffer.getvalue()})  # fmt: skip
    with FakePublisher(www) as server:
        summary, _ = _run(tmp_path / "w", server)
    assert not summary.ok
    (bad,) = [c for c in summary.checkpoints if not c.ok]
    assert bad.name == "kinetics_144k.pth" and "does not load with gmrw.load_model" in bad.problem
    assert "NOT KEPT kinetics_144k.pth" in "\n".join(summary_lines(summary))
    assert (tmp_path / "w" / "kubric_73k.pth").is_file() and not (
        tmp_path / "w" / "kinetics_144k.pth"
    ).exists()


def test_a_zip_without_a_listed_checkpoint_fails_naming_it(www, released, tmp_path):
    write_zip(www / ZIP_PATH.lstrip("/"), {"kubric_73k.pth": released[0]["kubric_73k.pth"]})
    with FakePublisher(www) as server:
        summary, _ = _run(tmp_path / "w", server)
    assert not summary.ok and summary.missing == ["kinetics_144k.pth"]
    assert "MISSING kinetics_144k.pth: not in the zip" in "\n".join(summary_lines(summary))


def test_a_truncated_zip_is_corrupt_and_not_kept(www, tmp_path):
    path = www / ZIP_PATH.lstrip("/")
    path.write_bytes(path.read_bytes()[:-5000])  # the central directory is gone
    with FakePublisher(www) as server:
        summary, _ = _run(tmp_path / "w", server, keep_archives=True)
    assert not summary.ok and "corrupt zip, nothing kept" in summary.failure
    assert not list((tmp_path / "w").glob("*.pth"))
    assert not (tmp_path / "w" / ".download" / "gmrw_weights.zip").exists()


def test_a_404_is_reported_and_exits_1(www, tmp_path, capsys):
    with FakePublisher(www) as server:
        code = main(
            ["download", "gmrw_weights", str(tmp_path / "w"), "--mirror", f"{server.url}/nothing.zip"]
        )
        out = capsys.readouterr().out
    assert code == 1 and "HTTP 404" in out
    assert [r.method for r in server.requests] == ["HEAD"]


def test_dry_run_prints_the_plan_and_writes_nothing(www, tmp_path, capsys):
    target = tmp_path / "w"
    size = (www / ZIP_PATH.lstrip("/")).stat().st_size
    with FakePublisher(www) as server:
        code = main(
            ["download", "gmrw_weights", str(target), "--mirror", f"{server.url}{ZIP_PATH}", "--dry-run"]
        )
        out = capsys.readouterr().out
    assert code == 0, out
    assert not target.exists() and not server.gets()
    assert f"GET {server.url}{ZIP_PATH}" in out and "loaded with gmrw.load_model" in out
    assert "expect kubric_73k.pth" in out and "expect kinetics_144k.pth" in out
    assert "disk: needs" in out and "free" in out
    from gmrw.datatools.download.disk import human_bytes

    assert human_bytes(size) in out and human_bytes(2 * size) in out


def test_split_is_refused_in_one_line(tmp_path, capsys):
    assert main(["download", "gmrw_weights", str(tmp_path), "--split", "train"]) == 2
    assert "no splits" in capsys.readouterr().err


def test_the_reference_checkpoint_is_described_from_its_own_records(fixtures_dir, tmp_path):
    """The reference's own DDP checkpoint (``original_checkpoint.pth``), served as kubric_73k.pth."""
    www = tmp_path / "www"
    shutil.copy(fixtures_dir / "original_checkpoint.pth", tmp_path / "kubric_73k.pth")
    write_zip(www / ZIP_PATH.lstrip("/"), {"kubric_73k.pth": (tmp_path / "kubric_73k.pth").read_bytes()})
    with FakePublisher(www) as server:
        summary, _ = _run(tmp_path / "w", server)
    (report,) = summary.checkpoints
    assert report.ok and report.step == 73000 and report.dataset == "kubric" and report.run == "train_kubric"
    assert summary.missing == ["kinetics_144k.pth"]  # the fixture has only the Kubric one


@pytest.mark.slow
def test_the_two_downloads_chain_into_an_eval_preset(www, tmp_path, capsys):
    """The README's commands: `gmrw-data download gmrw_weights W`, `gmrw-data download tapvid_davis D`,
    then one `gmrw-eval eval_preset=… paths.weights=W paths.data_root=D` finds both."""
    from gmrw.datatools.tiny import write_tapvid_pickle
    from gmrw.evaluation.run import evaluate
    from helpers import compose_config

    pkl = write_tapvid_pickle(
        tmp_path / "tapvid_davis.pkl", "davis", num_videos=2, num_frames=5, size=(24, 32)
    )
    # As tapnet publishes it: dm-tapnet/tapvid_davis.zip holding tapvid_davis/tapvid_davis.pkl.
    write_zip(www / "dm-tapnet" / "tapvid_davis.zip", {"tapvid_davis/tapvid_davis.pkl": pkl.read_bytes()})
    weights, data = tmp_path / "W", tmp_path / "D"
    with FakePublisher(www) as server:
        assert main(["download", "gmrw_weights", str(weights), "--mirror", f"{server.url}{ZIP_PATH}"]) == 0
        assert main(["download", "tapvid_davis", str(data), "--mirror", server.url]) == 0
    capsys.readouterr()
    overrides = [
        "eval_preset=kubric_davis_x2",
        f"paths.weights={weights}",
        f"paths.data_root={data}",
        # Small enough for a CPU test: the preset's 256x256 at x2 would take minutes.
        "data.resolution=[32,32]",
        "tracking.upsample_factor=1",
        "data.max_videos=1",
    ]
    report = evaluate(compose_config("eval", overrides, tmp_path / "run"))
    assert report["settings"]["checkpoint"] == str(weights / "kubric_73k.pth")
    assert report["settings"]["dataset"]["path"] == str(data / "tapvid_davis" / "tapvid_davis.pkl")
    assert len(report["per_video"]) == 1 and report["per_video"][0]["average_jaccard"] is not None
