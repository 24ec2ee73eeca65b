"""Where each dataset is published and where ``gmrw-data download`` puts it: the only place with URLs.

Publishers give few sizes or checksums: the CVDF and tapnet give none (sizes come from HEAD requests),
Kubric's TFDS build states each split's shard count and bytes in its ``dataset_info.json``, and Google
Cloud Storage (tapnet's zips, Kubric's shards) sends each object's MD5 in an ``x-goog-hash`` header,
which :mod:`gmrw.datatools.download.http` checks.
"""

from __future__ import annotations

import dataclasses

#: Kinetics-700-2020 as the CVDF hosts it (github.com/cvdfoundation/kinetics-dataset,
#: k700_2020_downloader.sh): one list of tarball URLs per split, and the annotation CSVs.
KINETICS_BASE = "https://s3.amazonaws.com/kinetics/700_2020"
#: tapnet's TAP-Vid downloads (github.com/google-deepmind/tapnet, tapnet/tapvid/README.md).
TAPVID_BASE = "https://storage.googleapis.com/dm-tapnet"
TAPNET_GENERATE_TAPVID = (
    "https://github.com/google-deepmind/tapnet/blob/main/tapnet/tapvid/generate_tapvid.py"
)
#: Kubric's public TFDS bucket gs://kubric-public/tfds, read over HTTPS (github.com/google-research/kubric,
#: challenges/movi/README.md); movi_e's builder declares version 1.0.0 (challenges/movi/movi_e.py).
KUBRIC_TFDS_BASE = "https://storage.googleapis.com/kubric-public/tfds"
MOVI_E_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One downloadable dataset.

    ``kind`` picks the planner (:data:`gmrw.datatools.download.plan.PLANNERS`); ``urls`` are its inputs;
    ``checks`` are the ``gmrw-data check`` (format, path under DIR) pairs that must pass afterwards;
    ``note`` is printed after every run (what this command does not do).
    """

    name: str
    title: str
    kind: str
    urls: dict[str, str]
    layout: str
    splits: tuple[str, ...] = ()
    checks: tuple[tuple[str, str], ...] = ()
    config: str = ""
    note: str = ""


def _tapvid_zip(name: str, title: str, fmt: str, members: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        title=title,
        kind="zip_folder",
        urls={"zip": f"{TAPVID_BASE}/{name}.zip", "folder": name, "required": f"{name}.pkl"},
        layout=f"DIR/{name}/{name}.pkl ({members}), with the zip's README.md and SOURCES.md",
        checks=((fmt, f"{name}/{name}.pkl"),),
        config=f"gmrw-eval data={fmt} data.path=DIR/{name}/{name}.pkl",
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="kinetics700_2020",
            title="Kinetics-700-2020 (CVDF tarballs of the 10 s clips)",
            kind="cvdf_tarballs",
            urls={
                "list": KINETICS_BASE + "/{split}/k700_2020_{split}_path.txt",
                "annotations": KINETICS_BASE + "/annotations/{split}.csv",
            },
            layout="DIR/<split>/<class>/<youtube id>_<start>_<end>.mp4 and DIR/annotations/<split>.csv",
            splits=("train", "val"),
            checks=(("kinetics", ""),),
            config="gmrw-train data=kinetics data.root=DIR",
        ),
        _tapvid_zip("tapvid_davis", "TAP-Vid-DAVIS (30 videos)", "tapvid_davis", "a dict name → example"),
        _tapvid_zip(
            "tapvid_rgb_stacking",
            "TAP-Vid-RGB-Stacking (50 videos)",
            "tapvid_rgb_stacking",
            "a list of examples",
        ),
        DatasetSpec(
            name="tapvid_kinetics",
            title="TAP-Vid-Kinetics labels (tapvid_kinetics.csv; the videos are not in it)",
            kind="zip_folder",
            urls={
                "zip": f"{TAPVID_BASE}/tapvid_kinetics.zip",
                "folder": "tapvid_kinetics",
                "required": "tapvid_kinetics.csv",
            },
            layout="DIR/tapvid_kinetics/tapvid_kinetics.csv (point tracks on Kinetics-700-2020 val clips)",
            note=(
                "TAP-Vid-Kinetics is not published as pickles: tapnet's own script builds the "
                "*_of_0010.pkl shards from this CSV and the Kinetics-700-2020 validation clips "
                f"({TAPNET_GENERATE_TAPVID}). This command does not run it. Steps: "
                "`gmrw-data download kinetics700_2020 KDIR --split val`, then "
                "`python3 generate_tapvid.py --input_csv_path=DIR/tapvid_kinetics/tapvid_kinetics.csv "
                "--output_base_path=DIR/tapvid_kinetics --video_root_path=KDIR/val` "
                "(needs tapnet/tapvid/requirements.txt: absl-py, ffmpeg-python, mediapy), then "
                "`gmrw-data check DIR/tapvid_kinetics --format tapvid_kinetics`."
            ),
        ),
        DatasetSpec(
            name="movi_e",
            title=f"Kubric MOVi-E 256x256 (TFDS {MOVI_E_VERSION}, gs://kubric-public/tfds/movi_e/256x256)",
            kind="tfds",
            urls={
                "base": KUBRIC_TFDS_BASE,
                "dataset": "movi_e",
                "config": "256x256",
                "version": MOVI_E_VERSION,
            },
            layout=(
                f"DIR/movi_e/256x256/{MOVI_E_VERSION}/{{dataset_info.json, features.json, "
                "movi_e-<split>.tfrecord-NNNNN-of-MMMMM}} (DIR is the TFDS data_dir)"
            ),
            splits=("train", "validation"),
            checks=(("kubric", ""),),
            config="gmrw-train experiment=kubric data.root=DIR",
            note=(
                "Our reader indexes shards by byte offset with local file reads, so it takes a local "
                "copy: data.root=gs://… is not supported."
            ),
        ),
    )
}

#: Named but not downloadable here, with the reason (shown by ``--help`` and on request).
NOT_DOWNLOADABLE = {
    "tapvid_kubric": "sampled from movi_e's validation split by our reader: download movi_e",
    "tapvid_kubric_tsv": "we know of no public URL for the paper's pre-generated validation_data.tsv",
}


#: The paper's released checkpoints: the Dropbox shared folder linked from the Evaluations section of
#: the paper's README (github.com/ayshrv/gmrw). ``dl=1`` asks Dropbox for the whole folder as one zip,
#: made on request: no size or checksum is published for it (sizes come from HEAD when Dropbox sends
#: one), so every checkpoint is checked by loading it (:mod:`gmrw.datatools.download.weights`).
GMRW_WEIGHTS_URL = (
    "https://www.dropbox.com/scl/fo/2uutl18md0c83et2aw0oz/ADkl-RAW0fneflvSKjd3MB0"
    "?rlkey=fk35z55x95t9mu6i7afbqkzp6&dl=1"
)


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """A zip of released checkpoints. ``files`` are the checkpoints it must hold, each with what the
    publisher says it is (the report states what each file itself records)."""

    name: str
    title: str
    url: str
    files: dict[str, str]
    config: str = ""


WEIGHTS: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="gmrw_weights",
            title="the paper's released checkpoints (Dropbox folder linked from the paper's README)",
            url=GMRW_WEIGHTS_URL,
            files={
                "kubric_73k.pth": "trained on Kubric MOVi-E (experiments/train_kubric.sh), step 73k",
                "kinetics_144k.pth": (
                    "trained on Kinetics-700-2020 to step 141k, then fine-tuned with the smoothness "
                    "loss to 144k (experiments/train_kinetics{,_finetune}.sh)"
                ),
            },
            config=(
                "gmrw-eval eval_preset=kubric_davis_x4 paths.weights=DIR "
                "paths.data_root=<the folder given to gmrw-data download tapvid_davis>"
            ),
        ),
    )
}
