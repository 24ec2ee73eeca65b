"""What a download consists of: the files to fetch, where they land, and what unpacks them.

A planner turns a :class:`~gmrw.datatools.download.registry.DatasetSpec` into :class:`Item`s, reading the
publisher's own index where there is one (the CVDF's per-split list of tarball URLs, the TFDS build's
``dataset_info.json``). Bookkeeping lives in ``DIR/.download/``, under each URL's path:

* archives while and after they download (``….tar.gz.part``, ``….tar.gz``), deleted once unpacked
  unless ``--keep-archives``;
* ``….done`` markers, written only after an archive was unpacked and moved into place;
* the publisher's list files, kept so that a rerun plans without the network;
* ``tmp/``, the scratch folders extraction starts in.

Plain files (CSV, TFDS shards) download to ``DIR/.download/<path>.part`` and are renamed to their final
path only when complete, so a reader never sees half a shard.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from gmrw.datatools.download.archives import (
    Extracted,
    extract_video_tarball,
    extract_zip_folder,
    read_kinetics_labels,
)
from gmrw.datatools.download.registry import DatasetSpec

BOOKKEEPING = ".download"


class PlanError(Exception):
    """The publisher's index could not be read or does not say what we need."""


def cache_path(root: Path, url: str) -> Path:
    """``DIR/.download/<url path>``: where ``url``'s archive, partial file or marker lives."""
    return Path(root) / BOOKKEEPING / urlsplit(url).path.lstrip("/")


@dataclasses.dataclass(frozen=True)
class VideoTarball:
    """Unpack a Kinetics tarball into ``split_dir``; flat clips are placed with ``annotations``."""

    split_dir: Path
    annotations: Path | None = None

    def __call__(self, archive: Path, tmp_root: Path) -> Extracted:
        labels = None
        if self.annotations is not None and self.annotations.is_file():
            # Read only if a clip needs it, and once per run.
            labels = functools.partial(_labels, self.annotations, self.annotations.stat().st_mtime_ns)
        return extract_video_tarball(archive, self.split_dir, tmp_root, labels)


@functools.lru_cache(maxsize=4)
def _labels(csv_path: Path, stamp: int) -> dict[str, str]:
    """The annotations of a split, read once per run (~0.5 M rows for Kinetics' train split)."""
    return read_kinetics_labels(csv_path)


@dataclasses.dataclass(frozen=True)
class ZipFolder:
    """Unpack a zip's folder to ``folder``; ``required`` must be at its top."""

    folder: Path
    required: str

    def __call__(self, archive: Path, tmp_root: Path) -> Extracted:
        return extract_zip_folder(archive, self.folder, tmp_root, self.required)


@dataclasses.dataclass
class Item:
    """One file to fetch. ``dest`` is its final path (plain files) or the archive's path in the
    bookkeeping folder (``unpack`` set). ``first`` items (small metadata) finish before the rest start."""

    url: str
    dest: Path
    part: Path
    unpack: VideoTarball | ZipFolder | None = None
    size: int | None = None
    first: bool = False

    @property
    def name(self) -> str:
        return Path(urlsplit(self.url).path).name

    @property
    def marker(self) -> Path:
        return Path(f"{self.dest}.done")

    def complete(self) -> bool:
        """Nothing left to do: the file is in place, or the archive was unpacked (its marker)."""
        return self.marker.is_file() if self.unpack is not None else self.dest.is_file()

    def partial_bytes(self) -> int:
        """Bytes already on disk for this item (a finished archive or a partial file)."""
        for path in (self.dest, self.part) if self.unpack is not None else (self.part,):
            if path.is_file():
                return path.stat().st_size
        return 0


def plain(root: Path, url: str, dest: Path, first: bool = False) -> Item:
    return Item(url, dest, Path(f"{cache_path(root, url)}.part"), first=first)


def archive(root: Path, url: str, unpack: VideoTarball | ZipFolder) -> Item:
    dest = cache_path(root, url)
    return Item(url, dest, Path(f"{dest}.part"), unpack=unpack)


@dataclasses.dataclass
class PlanContext:
    """What planners need: the target, the splits, and ``read_index(url)`` → bytes, which keeps a
    copy in the bookkeeping folder (reused by reruns) unless this is a dry run."""

    root: Path
    splits: tuple[str, ...]
    read_index: Callable[[str], bytes]


# ---------------------------------------------------------------------------------------- planners


def plan_cvdf_tarballs(spec: DatasetSpec, ctx: PlanContext) -> list[Item]:
    """Kinetics-700-2020: per split, the annotations CSV (first) and every tarball of the CVDF's list."""
    items: list[Item] = []
    for split in ctx.splits:
        list_url = spec.urls["list"].format(split=split)
        lines = ctx.read_index(list_url).decode("utf-8", "replace").splitlines()
        urls = [line.strip() for line in lines if line.strip()]
        bad = [u for u in urls if urlsplit(u).scheme not in ("http", "https")]
        if bad or not urls:
            raise PlanError(f"{list_url}: expected one tarball URL per line, got {bad[:1] or 'nothing'}")
        csv_path = ctx.root / "annotations" / f"{split}.csv"
        items.append(plain(ctx.root, spec.urls["annotations"].format(split=split), csv_path, first=True))
        unpack = VideoTarball(ctx.root / split, csv_path)
        items += [archive(ctx.root, url, unpack) for url in urls]
    return items


def plan_zip_folder(spec: DatasetSpec, ctx: PlanContext) -> list[Item]:
    """A single zip (tapnet's TAP-Vid downloads) unpacked to ``DIR/<folder>/``."""
    unpack = ZipFolder(ctx.root / spec.urls["folder"], spec.urls["required"])
    return [archive(ctx.root, spec.urls["zip"], unpack)]


#: TFDS's default shard file names (tensorflow_datasets.core.naming), used when the
#: dataset_info.json of an older build states no template.
DEFAULT_TFDS_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def tfds_shard_names(dataset: str, split_info: dict, file_format: str) -> list[str]:
    """The shard file names of one split of a TFDS ``dataset_info.json`` (its ``shardLengths``)."""
    # Older dataset_info.json files state only numShards.
    count = len(split_info.get("shardLengths") or ()) or int(split_info.get("numShards") or 0)
    if count == 0:
        raise PlanError(f"split {split_info.get('name')!r} lists no shardLengths")
    template = split_info.get("filepathTemplate") or DEFAULT_TFDS_TEMPLATE
    unknown = set(re.findall(r"{(\w+)}", template)) - {"DATASET", "SPLIT", "FILEFORMAT", "SHARD_X_OF_Y"}
    if unknown:
        raise PlanError(f"unsupported TFDS filepathTemplate {template!r} (fields {sorted(unknown)})")
    base = (
        template.replace("{DATASET}", dataset)
        .replace("{SPLIT}", split_info["name"])
        .replace("{FILEFORMAT}", file_format)
    )
    return [base.replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{count:05d}") for i in range(count)]


def plan_tfds(spec: DatasetSpec, ctx: PlanContext) -> list[Item]:
    """A TFDS build copied file by file: its dataset_info.json names every shard of every split."""
    u = spec.urls
    base = f"{u['base']}/{u['dataset']}/{u['config']}/{u['version']}"
    version_dir = ctx.root / u["dataset"] / u["config"] / u["version"]
    info_url = f"{base}/dataset_info.json"
    try:
        info = json.loads(ctx.read_index(info_url))
    except ValueError as exc:
        raise PlanError(f"{info_url}: not JSON ({exc})") from None
    splits = {s.get("name"): s for s in info.get("splits", [])}
    missing = [s for s in ctx.splits if s not in splits]
    if missing:
        raise PlanError(f"{info_url}: no split {missing} (has {sorted(splits)})")
    file_format = info.get("fileFormat") or "tfrecord"
    items = [
        plain(ctx.root, info_url, version_dir / "dataset_info.json", first=True),
        plain(ctx.root, f"{base}/features.json", version_dir / "features.json", first=True),
    ]
    for split in ctx.splits:
        for name in tfds_shard_names(u["dataset"], splits[split], file_format):
            items.append(plain(ctx.root, f"{base}/{name}", version_dir / name))
    return items


PLANNERS: dict[str, Callable[[DatasetSpec, PlanContext], list[Item]]] = {
    "cvdf_tarballs": plan_cvdf_tarballs,
    "zip_folder": plan_zip_folder,
    "tfds": plan_tfds,
}
