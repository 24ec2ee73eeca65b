"""A stand-in for the data hosts, on 127.0.0.1: tiny files in the publishers' real formats, served by a
real HTTP server whose faults a test sets (Range on/off, a connection cut mid-file, 404s, MD5 headers).

The folder tree repeats the publishers' URL paths, so ``--mirror http://127.0.0.1:PORT`` finds
``/kinetics/700_2020/...`` (CVDF), ``/dm-tapnet/...`` (tapnet) and ``/kubric-public/tfds/...`` (Kubric).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import http.server
import io
import re
import tarfile
import threading
import zipfile
from pathlib import Path

from gmrw.datatools import tiny

CVDF = "https://s3.amazonaws.com/kinetics/700_2020"
KINETICS_ROOT = "kinetics/700_2020"


@dataclasses.dataclass
class Faults:
    range_support: bool = True
    #: URL path → byte count after which the first GET of it is cut off (once).
    drop_after: dict[str, int] = dataclasses.field(default_factory=dict)
    #: URL paths answered with this status instead of the file (``get_status``: GET only, HEAD succeeds).
    status: dict[str, int] = dataclasses.field(default_factory=dict)
    get_status: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Send Google Cloud Storage's ``x-goog-hash: md5=…`` (wrong on purpose for paths in ``bad_md5``).
    goog_md5: bool = False
    bad_md5: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Request:
    method: str
    path: str
    range: str | None


class FakePublisher:
    """Serves ``root`` on 127.0.0.1 (a free port) with ``faults``; records every request."""

    def __init__(self, root: Path, faults: Faults | None = None):
        self.root = Path(root)
        self.faults = faults or Faults()
        self.requests: list[Request] = []
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePublisher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def gets(self, path_part: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and path_part in r.path]

    def _handler(self):
        publisher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                faults = publisher.faults
                path = self.path.split("?")[0]
                with publisher._lock:
                    publisher.requests.append(Request(self.command, path, self.headers.get("Range")))
                file = publisher.root / path.lstrip("/")
                status = faults.status.get(path) or (faults.get_status.get(path) if body else None)
                if status is not None or not file.is_file():
                    self._empty(status or 404)
                    return
                data = file.read_bytes()
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m and faults.range_support:
                    start = int(m.group(1))
                    if start >= len(data):
                        self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes" if faults.range_support else "none")
                if faults.goog_md5:
                    digest = hashlib.md5(data + (b"x" if path in faults.bad_md5 else b"")).digest()
                    self.send_header(
                        "x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(digest).decode()}"
                    )
                self.end_headers()
                if not body:
                    return
                cut = faults.drop_after.get(path)
                with publisher._lock:
                    drop = cut is not None and path not in publisher._dropped
                    if drop:
                        publisher._dropped.add(path)
                if drop:
                    # Headers promised the whole file; send part of it and hang up.
                    self.wfile.write(data[start : max(cut, start)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

            def _empty(self, status: int, headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


# ------------------------------------------------------------------------------------ the tree


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@dataclasses.dataclass
class PublisherTree:
    """The files served, and what each archive holds (``clips[split][class][file name] = bytes``)."""

    root: Path
    clips: dict[str, dict[str, dict[str, bytes]]]
    pickles: dict[str, bytes]

    def kinetics(self, *parts: str) -> Path:
        return self.root / KINETICS_ROOT / Path(*parts)

    def write_list(self, split: str, names: list[str]) -> None:
        """The CVDF list file of ``split``: one absolute S3 URL per line, as published."""
        lines = [f"{CVDF}/{split}/{name}" for name in names]
        self.kinetics(split, f"k700_2020_{split}_path.txt").write_text("\n".join(lines) + "\n")


def build_tree(root: Path, work: Path) -> PublisherTree:
    """Kinetics tarballs (train: one with class folders, one flat; val: class folders), annotation
    CSVs, TAP-Vid zips and the TAP-Vid-Kinetics labels zip, under the publishers' URL paths."""
    videos = tiny.write_tiny_kinetics(
        work / "kinetics", classes=("abseiling", "playing cello"), videos_per_class=2, num_frames=6,
        size=(32, 32), bad_files=False,
    )["good"]  # fmt: skip
    clips: dict[str, dict[str, dict[str, bytes]]] = {}
    for video in videos:
        clips.setdefault(video.parent.parent.name, {}).setdefault(video.parent.name, {})[video.name] = (
            video.read_bytes()
        )
    tree = PublisherTree(root, clips, {})
    train, val = clips["train"], clips["val"]
    _tar_gz(tree.kinetics("train", "k700_train_001.tar.gz"),
            {f"abseiling/{n}": d for n, d in train["abseiling"].items()})  # fmt: skip
    _tar_gz(tree.kinetics("train", "k700_train_002.tar.gz"), dict(train["playing cello"]))  # flat
    _tar_gz(tree.kinetics("val", "k700_val_001.tar.gz"),
            {f"{c}/{n}": d for c, files in val.items() for n, d in files.items()})  # fmt: skip
    tree.write_list("train", ["k700_train_001.tar.gz", "k700_train_002.tar.gz"])
    tree.write_list("val", ["k700_val_001.tar.gz"])
    for split, classes in clips.items():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for cls, files in classes.items():
            for name in files:
                youtube_id, start, end = Path(name).stem.rsplit("_", 2)
                writer.writerow([cls, youtube_id, int(start), int(end), split])
        path = tree.kinetics("annotations", f"{split}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out.getvalue())

    for name, kind in (("tapvid_davis", "davis"), ("tapvid_rgb_stacking", "rgb_stacking")):
        pkl = tiny.write_tapvid_pickle(work / f"{name}.pkl", kind, num_videos=2, num_frames=5, size=(24, 32))
        tree.pickles[name] = pkl.read_bytes()
        _zip(root / "dm-tapnet" / f"{name}.zip",
             {f"{name}/{name}.pkl": tree.pickles[name], f"{name}/README.md": b"TAP-Vid test copy\n"})  # fmt: skip
    _zip(root / "dm-tapnet" / "tapvid_kinetics.zip",
         {"tapvid_kinetics/tapvid_kinetics.csv": b"youtube_id,start,end\n", "tapvid_kinetics/README.md": b"x\n"})  # fmt: skip
    return tree


def add_movi_e(tree: PublisherTree, work: Path) -> Path:
    """A tiny TFDS build of movi_e/256x256 at Kubric's bucket path; returns its version folder."""
    version_dir = tiny.write_tiny_movi_e(
        work / "tfds", num_train=2, num_validation=1, num_frames=4, size=(16, 16)
    )
    target = tree.root / "kubric-public" / "tfds" / "movi_e" / "256x256" / version_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for file in version_dir.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target
