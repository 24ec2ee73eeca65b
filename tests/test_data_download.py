"""`gmrw-data download` against a fake publisher on 127.0.0.1 (tests/fake_publisher.py): no internet.

Every run is bounded: retries are few with millisecond backoff and every socket has a 5 s timeout.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from fake_publisher import CVDF, FakePublisher, Faults, add_movi_e, build_tree
from gmrw.cli.data import main
from gmrw.datatools.check import check_dataset
from gmrw.datatools.download import archives, runner
from gmrw.datatools.download.disk import human_bytes
from gmrw.datatools.download.http import RetryPolicy, mirror_url
from gmrw.datatools.download.plan import tfds_shard_names
from gmrw.datatools.download.progress import Reporter, TerminalReporter
from gmrw.datatools.download.report import summary_lines
from gmrw.datatools.download.runner import DownloadSetupError, Options, download

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05, connect_timeout=5, read_timeout=5)
TRAIN_001 = "/kinetics/700_2020/train/k700_train_001.tar.gz"


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    """The publishers' files, built once (real mp4s, tarballs, zips); tests copy them before changing."""
    base = tmp_path_factory.mktemp("publisher")
    return build_tree(base / "www", base / "work")


def _tree(published, tmp_path):
    """A per-test copy of the publishers' files, which the test may break."""
    copy = type(published)(tmp_path / "www", published.clips, published.pickles)
    shutil.copytree(published.root, copy.root)
    return copy


def _run(name, target, server, splits=None, reporter=None, **options):
    stream = io.StringIO()
    summary = download(
        name,
        target,
        splits,
        Options(mirror=server.url, policy=FAST, **options),
        reporter or Reporter(stream, interval=0.0),
    )
    return summary, stream.getvalue()


def _assert_kinetics_layout(target: Path, clips, splits=("train", "val")):
    for split in splits:
        for cls, files in clips[split].items():
            for name, data in files.items():
                path = target / split / cls / name
                assert path.read_bytes() == data, path
        written = sorted(p.relative_to(target / split) for p in (target / split).rglob("*") if p.is_file())
        assert len(written) == sum(len(f) for f in clips[split].values())


# ------------------------------------------------------------------------------------ Kinetics


def test_clean_run_gives_the_reader_layout_and_passes_check(published, tmp_path, capsys):
    """Through the CLI: class-folder and flat tarballs (classes from the CSV), both splits."""
    tree = _tree(published, tmp_path)
    target = tmp_path / "k700"
    with FakePublisher(tree.root) as server:
        code = main(["download", "kinetics700_2020", str(target), "--mirror", server.url, "--workers", "2"])
        out = capsys.readouterr().out
    assert code == 0, out
    _assert_kinetics_layout(target, tree.clips)
    assert (target / "annotations" / "train.csv").read_bytes() == tree.kinetics(
        "annotations", "train.csv"
    ).read_bytes()
    assert f"check: gmrw-data check {target} --format kinetics" in out
    assert "5 file(s) done, 0 failed" in out  # 2 CSVs + 3 tarballs
    # Markers written after unpacking; archives gone (no --keep-archives); no scratch left.
    cache = target / ".download" / "kinetics" / "700_2020"
    marker = json.loads((cache / "train" / "k700_train_002.tar.gz.done").read_text())
    assert marker["files"] == 2 and marker["url"] == f"{CVDF}/train/k700_train_002.tar.gz"
    assert not list(cache.rglob("*.tar.gz")) and not list(cache.rglob("*.part"))
    assert not any((target / ".download" / "tmp").iterdir())
    report = check_dataset(str(target), "kinetics")
    assert report.usable and not report.bad_files
    assert [s.items for s in report.splits] == [4, 4]


def test_dropped_connection_resumes_with_range(published, tmp_path):
    tree = _tree(published, tmp_path)
    original = tree.kinetics("train", "k700_train_001.tar.gz").read_bytes()
    cut = len(original) // 2
    faults = Faults(drop_after={TRAIN_001: cut})
    with FakePublisher(tree.root, faults) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"], keep_archives=True)
    assert summary.ok, log
    gets = server.gets("k700_train_001")
    assert [g.range for g in gets] == [None, f"bytes={cut}-"]  # the second GET continued the file
    kept = tmp_path / "k" / ".download" / TRAIN_001.lstrip("/")
    assert kept.read_bytes() == original
    assert "retry 1/3" in log and "IncompleteRead" in log
    _assert_kinetics_layout(tmp_path / "k", tree.clips, ["train"])


def test_server_without_range_restarts_the_file_cleanly(published, tmp_path):
    tree = _tree(published, tmp_path)
    original = tree.kinetics("train", "k700_train_001.tar.gz").read_bytes()
    faults = Faults(range_support=False, drop_after={TRAIN_001: len(original) // 3})
    with FakePublisher(tree.root, faults) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"], keep_archives=True)
    assert summary.ok, log
    assert [g.range is not None for g in server.gets("k700_train_001")] == [False, True]
    assert "server ignored the Range request, restarting from byte 0" in log
    assert (tmp_path / "k" / ".download" / TRAIN_001.lstrip("/")).read_bytes() == original
    _assert_kinetics_layout(tmp_path / "k", tree.clips, ["train"])


def test_a_404_is_reported_at_once_and_the_others_finish(published, tmp_path, capsys):
    tree = _tree(published, tmp_path)
    tree.write_list("train", ["k700_train_001.tar.gz", "k700_train_404.tar.gz", "k700_train_002.tar.gz"])
    with FakePublisher(tree.root) as server:
        code = main(
            ["download", "kinetics700_2020", str(tmp_path / "k"), "--split", "train", "--mirror", server.url]
        )
        out = capsys.readouterr().out
    assert code == 1
    assert "FAILED k700_train_404.tar.gz" in out and "HTTP 404" in out
    missing = [r for r in server.requests if "k700_train_404" in r.path]
    assert [r.method for r in missing] == ["HEAD"]  # refused once, never retried
    _assert_kinetics_layout(tmp_path / "k", tree.clips, ["train"])


def test_a_403_on_get_is_not_retried(published, tmp_path):
    tree = _tree(published, tmp_path)
    with FakePublisher(tree.root, Faults(get_status={TRAIN_001: 403})) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"], workers=1)
    assert not summary.ok
    assert [o.item.name for o in summary.failed] == ["k700_train_001.tar.gz"]
    assert "HTTP 403" in summary.failed[0].detail
    assert len(server.gets("k700_train_001")) == 1


def test_a_corrupt_tarball_is_named_and_leaves_nothing(published, tmp_path):
    tree = _tree(published, tmp_path)
    path = tree.kinetics("train", "k700_train_002.tar.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # its first clip is intact, the gzip stream is cut
    with tarfile.open(fileobj=io.BytesIO(data[: len(data) - 200]), mode="r:gz") as tar:
        assert tar.next() is not None  # a naive extractor would have written that first clip
    with FakePublisher(tree.root) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"])
    assert [o.item.name for o in summary.failed] == ["k700_train_002.tar.gz"]
    assert "corrupt archive" in summary.failed[0].detail
    assert not (tmp_path / "k" / "train" / "playing cello").exists()
    assert len(list((tmp_path / "k" / "train" / "abseiling").iterdir())) == 2
    cache = tmp_path / "k" / ".download" / "kinetics" / "700_2020" / "train"
    assert (
        not (cache / "k700_train_002.tar.gz").exists() and not (cache / "k700_train_002.tar.gz.done").exists()
    )
    assert not any((tmp_path / "k" / ".download" / "tmp").iterdir())
    assert "FAILED k700_train_002.tar.gz: corrupt archive" in "\n".join(summary_lines(summary))


def test_rerun_downloads_nothing(published, tmp_path):
    tree = _tree(published, tmp_path)
    with FakePublisher(tree.root) as server:
        first, _ = _run("kinetics700_2020", tmp_path / "k", server)
        assert first.ok and first.transferred > 0
        server.requests.clear()
        again, log = _run("kinetics700_2020", tmp_path / "k", server)
    assert again.ok and server.requests == []
    assert again.skipped == 5 and again.outcomes == [] and again.transferred == 0


def test_an_archive_downloaded_but_not_unpacked_is_unpacked_without_a_transfer(published, tmp_path):
    """A marker is what says done: an archive on disk without one is unpacked again, not refetched."""
    tree = _tree(published, tmp_path)
    target = tmp_path / "k"
    with FakePublisher(tree.root) as server:
        first, _ = _run("kinetics700_2020", target, server, ["val"], keep_archives=True)
        archive = target / ".download" / "kinetics" / "700_2020" / "val" / "k700_val_001.tar.gz"
        Path(f"{archive}.done").unlink()
        shutil.rmtree(target / "val")
        server.requests.clear()
        again, _ = _run("kinetics700_2020", target, server, ["val"])
    assert first.ok and again.ok
    assert server.requests == [] and again.transferred == 0
    _assert_kinetics_layout(target, tree.clips, ["val"])
    assert not archive.exists()  # unpacked, then removed (no --keep-archives this time)


def test_unplaceable_members_are_left_out_by_name(published, tmp_path):
    tree = _tree(published, tmp_path)
    clip = next(iter(tree.clips["train"]["abseiling"].values()))
    with tarfile.open(tree.kinetics("train", "k700_train_002.tar.gz"), "w:gz") as tar:
        for name, data in (("stranger_000001_000011.mp4", clip), ("README.txt", b"hi"),
                           ("abseiling/vid000_000000_000010.mp4", clip)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with FakePublisher(tree.root) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"])
    assert summary.ok, log
    assert "left out of k700_train_002.tar.gz: stranger_000001_000011.mp4 (in no class folder" in log
    assert "left out of k700_train_002.tar.gz: README.txt (not a regular video file)" in log
    marker = tmp_path / "k" / ".download" / "kinetics" / "700_2020" / "train" / "k700_train_002.tar.gz.done"
    assert json.loads(marker.read_text())["left_out"] == 2
    assert not list((tmp_path / "k" / "train").rglob("stranger*"))


def test_a_tarball_whose_clips_cannot_be_placed_says_what_it_held_and_why(published, tmp_path):
    """Two clips in no class folder, their ids not in the annotations, and a README: the one-line
    failure names the clips as video files and why none was used (not "no video files in it")."""
    tree = _tree(published, tmp_path)
    clip = next(iter(tree.clips["train"]["abseiling"].values()))
    with tarfile.open(tree.kinetics("train", "k700_train_002.tar.gz"), "w:gz") as tar:
        for name, data in (("stranger_000001_000011.mp4", clip), ("other_000002_000012.mp4", clip),
                           ("README.txt", b"hi")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with FakePublisher(tree.root) as server:
        summary, log = _run("kinetics700_2020", tmp_path / "k", server, ["train"])
    assert not summary.ok
    [failed] = summary.failed
    assert failed.item.name == "k700_train_002.tar.gz"
    assert "none of its 2 video file(s) could be placed" in failed.detail
    assert "not in the split's annotations CSV (e.g. stranger_000001_000011.mp4)" in failed.detail
    assert "1 other member(s) are not video files" in failed.detail and "\n" not in failed.detail
    assert "FAILED k700_train_002.tar.gz: " + failed.detail in summary_lines(summary)
    assert not list((tmp_path / "k" / "train").rglob("stranger*"))


def test_a_dry_run_whose_lookup_failed_exits_1_with_one_line(tmp_path, capsys):
    """Nothing listens at the mirror: the size lookup fails, and the dry run says so instead of
    printing a plan of unknown sizes with exit status 0."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["download", "tapvid_davis", str(tmp_path / "tv"), "--dry-run", "--retries", "0",
                 "--mirror", f"http://127.0.0.1:{port}"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and not (tmp_path / "tv").exists()
    assert "UNREACHABLE" in captured.out and "1 could not be looked up" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("gmrw-data download: error:")]
    assert len(errors) == 1 and "1 file(s) could not be looked up (first: tapvid_davis.zip" in errors[0]
    assert "check the network or --mirror" in errors[0] and "Traceback" not in captured.err


def test_dry_run_lists_files_and_space_and_writes_nothing(published, tmp_path, capsys):
    tree = _tree(published, tmp_path)
    target = tmp_path / "k"
    with FakePublisher(tree.root) as server:
        code = main(["download", "kinetics700_2020", str(target), "--dry-run", "--mirror", server.url])
        out = capsys.readouterr().out
    assert code == 0 and not target.exists()
    assert not server.gets(".tar.gz")  # only the lists were read, sizes came from HEAD
    for name in ("train/k700_train_001.tar.gz", "train/k700_train_002.tar.gz", "val/k700_val_001.tar.gz"):
        assert f"GET {server.url}/kinetics/700_2020/{name}" in out
    sizes = [
        tree.kinetics(*n.split("/")).stat().st_size
        for n in ("train/k700_train_001.tar.gz", "train/k700_train_002.tar.gz", "val/k700_val_001.tar.gz",
                  "annotations/train.csv", "annotations/val.csv")
    ]  # fmt: skip
    assert f"would fetch 5 file(s), {human_bytes(sum(sizes))}" in out
    assert "disk: needs" in out and "free" in out


def test_refuses_to_start_without_the_space(published, tmp_path, capsys, monkeypatch):
    tree = _tree(published, tmp_path)
    monkeypatch.setattr(runner, "free_bytes", lambda path: 1000)
    with FakePublisher(tree.root) as server:
        code = main(["download", "kinetics700_2020", str(tmp_path / "k"), "--mirror", server.url])
        err = capsys.readouterr().err
    assert code == 2 and "not enough space" in err and "1.0 KB free" in err
    assert not server.gets(".tar.gz") and not server.gets(".csv")


# ------------------------------------------------------------------------------------ TAP-Vid


@pytest.mark.parametrize("name", ["tapvid_davis", "tapvid_rgb_stacking"])
def test_tapvid_zip_unpacks_to_the_pickle_the_reader_takes(published, tmp_path, name):
    tree = _tree(published, tmp_path)
    with FakePublisher(tree.root, Faults(goog_md5=True)) as server:
        summary, log = _run(name, tmp_path / "tv", server)
    assert summary.ok, log
    pkl = tmp_path / "tv" / name / f"{name}.pkl"
    assert pkl.read_bytes() == tree.pickles[name]
    assert (tmp_path / "tv" / name / "README.md").is_file()
    report = check_dataset(str(pkl), name)
    assert report.usable and not report.bad_files and report.splits[0].items == 2
    assert f"check: gmrw-data check {pkl} --format {name}" in "\n".join(summary_lines(summary))


def test_md5_mismatch_restarts_once_then_fails(published, tmp_path):
    tree = _tree(published, tmp_path)
    faults = Faults(goog_md5=True, bad_md5={"/dm-tapnet/tapvid_davis.zip"})
    with FakePublisher(tree.root, faults) as server:
        summary, log = _run("tapvid_davis", tmp_path / "tv", server)
    assert not summary.ok and "MD5" in summary.failed[0].detail
    assert len(server.gets("tapvid_davis.zip")) == 2
    assert not (tmp_path / "tv" / "tapvid_davis").exists()


def test_tapvid_kinetics_fetches_the_labels_and_says_what_it_does_not_do(published, tmp_path):
    tree = _tree(published, tmp_path)
    with FakePublisher(tree.root) as server:
        summary, _ = _run("tapvid_kinetics", tmp_path / "tv", server)
    assert summary.ok
    assert (tmp_path / "tv" / "tapvid_kinetics" / "tapvid_kinetics.csv").is_file()
    text = "\n".join(summary_lines(summary))
    assert "generate_tapvid.py" in text and "does not run it" in text and "check:" not in text


# ------------------------------------------------------------------------------------ MOVi-E


@pytest.mark.slow
def test_movi_e_copies_the_tfds_build_its_dataset_info_lists(published, tmp_path):
    tree = _tree(published, tmp_path)
    version_dir = add_movi_e(tree, tmp_path / "work")
    with FakePublisher(tree.root, Faults(goog_md5=True)) as server:
        only_val, _ = _run("movi_e", tmp_path / "val_only", server, ["validation"])
        summary, log = _run("movi_e", tmp_path / "tfds", server)
    assert only_val.ok and summary.ok, log
    got = tmp_path / "tfds" / "movi_e" / "256x256" / "1.0.0"
    names = sorted(p.name for p in got.iterdir())
    assert names == sorted(
        ["dataset_info.json", "features.json", "movi_e-train.tfrecord-00000-of-00001",
         "movi_e-validation.tfrecord-00000-of-00001"]
    )  # fmt: skip
    for name in names:
        assert (got / name).read_bytes() == (version_dir / name).read_bytes()
    val_only = sorted(p.name for p in (tmp_path / "val_only" / "movi_e" / "256x256" / "1.0.0").iterdir())
    assert "movi_e-train.tfrecord-00000-of-00001" not in val_only
    report = check_dataset(str(tmp_path / "tfds"), "kubric")
    assert report.usable and not report.bad_files


def test_tfds_shard_names_follow_the_dataset_info():
    split = {"name": "train", "shardLengths": ["10"] * 3}
    assert tfds_shard_names("movi_e", split, "tfrecord") == [
        f"movi_e-train.tfrecord-0000{i}-of-00003" for i in range(3)
    ]
    templated = dict(split, filepathTemplate="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
    assert tfds_shard_names("movi_e", templated, "tfrecord") == tfds_shard_names("movi_e", split, "tfrecord")


def test_gs_urls_are_refused_by_the_kubric_reader_with_the_way_out():
    from gmrw.data.readers.movi_e import find_version_dir

    with pytest.raises(FileNotFoundError, match="gmrw-data download movi_e"):
        find_version_dir("gs://kubric-public/tfds")


# ------------------------------------------------------------------------------------ pieces


def test_mirror_keeps_the_publisher_path():
    url = f"{CVDF}/train/k700_train_001.tar.gz"
    assert (
        mirror_url(url, "http://m.example/data/")
        == "http://m.example/data/kinetics/700_2020/train/k700_train_001.tar.gz"
    )
    assert mirror_url(url, None) == url


def test_archive_members_cannot_escape(tmp_path):
    bad = tmp_path / "evil.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.mp4")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(archives.ArchiveLayoutError, match="outside"):
        archives.extract_video_tarball(bad, tmp_path / "out" / "train", tmp_path / "tmp")
    assert not (tmp_path / "escaped.mp4").exists() and not (tmp_path / "out").exists()


def test_unknown_names_and_splits_are_one_line_errors(tmp_path):
    with pytest.raises(DownloadSetupError, match="sampled from movi_e"):
        download("tapvid_kubric", tmp_path)
    with pytest.raises(DownloadSetupError, match="no split 'test'"):
        download("kinetics700_2020", tmp_path, ["test"])
    with pytest.raises(DownloadSetupError, match="has no splits"):
        download("tapvid_davis", tmp_path, ["train"])


def test_terminal_progress_shows_bytes_and_files(published, tmp_path):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tree = _tree(published, tmp_path)
    stream = Tty()
    with FakePublisher(tree.root) as server:
        summary, _ = _run(
            "kinetics700_2020", tmp_path / "k", server, ["val"], reporter=TerminalReporter(stream)
        )
    assert summary.ok
    text = stream.getvalue()
    assert "files 2/2 done, 0 failed" in text and "B/s" in text
