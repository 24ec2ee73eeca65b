"""Training-loader throughput: cycle clips per second for one loader worker (one process).

    python benchmarks/bench_loaders.py                       # paper crops 640 → 512
    python benchmarks/bench_loaders.py --clips 40 --work-dir /tmp/gmrw_bench

Data (generated once into ``--work-dir``, reused afterwards):

* Kinetics: ``--videos`` mp4s (H.264, yuv420p) per resolution in ``--resolutions``, ``--seconds`` long
  at ``--fps``; a clip decodes two frames ``--frame-gap`` apart with decord, then the crop pipeline.
* Kubric: a MOVi-E-format TFDS folder (24 frames at 256×256 with movi_e's complete feature spec:
  flows, depth, normals, object coordinates, … ; ~20 MB a record) of ``--kubric-examples`` videos;
  a clip picks the ``video`` feature out of one record (reading only its bytes), decodes its two
  PNG frames and runs the crop pipeline. ``tapvid_kubric`` (evaluation) decodes every feature of a
  record and samples 256 tracks; it is timed too, per video.

For each source we report the clip rate of the full sample (``dataset[key]``) and, separately, of
the decoding alone, in the main process with ``torch.set_num_threads(1)`` (a DataLoader worker
runs single-threaded the same way): samples per second per loader worker. Multiply by workers for a
loader's ceiling, CPU cores allowing.

``--loader-workers N`` also times the real training loader (:func:`gmrw.data.loaders.training_loader`,
batch 1, N worker processes): what reaches the training loop, including the transfer of each
sample (4 × 3 × 512 × 512 float32, 12.6 MB) from the worker.

How many workers keep one GPU fed: a GPU taking ``t_step`` seconds per step at batch ``B`` (per
GPU) consumes ``B / t_step`` samples/s; one worker delivers ``r`` samples/s, i.e. takes ``1 / r``
seconds per sample, so

    workers = ceil(B × (1 / r) / t_step)          (and at least that many free CPU cores)

``--step-time T`` (seconds, a GPU step measured elsewhere, e.g. by benchmarks/gpu_check.py) prints
that number for each source; without it the table says the GPU step is unmeasured. For a
measurement worth keeping, pin the process to one idle core:

    taskset -c 0 python benchmarks/bench_loaders.py --loader-workers 1 --json loaders.json

The first lines of the output give the CPU affinity and load average the figures were taken under.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _rate(fn, keys) -> tuple[float, float]:
    """(clips/s over all keys, median seconds per clip)."""
    times = []
    for key in keys:
        t0 = time.perf_counter()
        fn(key)
        times.append(time.perf_counter() - t0)
    return len(times) / sum(times), statistics.median(times)


def loader_rate(dataset, workers: int, samples: int) -> float:
    """Samples/s through the training loader with ``workers`` processes (batch 1), after each worker
    delivered its first sample (worker start-up and the first file opens are not counted)."""
    from gmrw.data.loaders import training_loader

    loader = training_loader(dataset, batch_size=1, num_workers=workers, seed=0)
    batches = iter(loader)
    for _ in range(max(workers, 1)):
        next(batches)
    t0 = time.perf_counter()
    for _ in range(samples):
        next(batches)
    rate = samples / (time.perf_counter() - t0)
    del batches  # stops the workers
    return rate


def workers_needed(clips_per_s: float, step_time: float, batch_size: int) -> int:
    """Loader workers that keep a GPU taking ``step_time`` s per step at ``batch_size`` fed."""
    return math.ceil(batch_size / (step_time * clips_per_s))


def conditions() -> str:
    """What the figures were measured under: the cores this process may use, and the load."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, this process pinned to "
        f"{len(cores)} core(s) {cores[:8]}, load average {load} (1, 5, 15 min)"
    )


def prepare_kinetics(work: Path, resolutions, videos: int, seconds: float, fps: int) -> dict[str, Path]:
    from gmrw.datatools.tiny import textured_video
    from gmrw.video import write_video

    roots = {}
    for res in resolutions:
        w, h = (int(v) for v in res.split("x"))
        root = work / f"kinetics_{w}x{h}_{seconds:g}s_{fps}fps"
        for v in range(videos):
            path = root / "train" / f"class{v % 2}" / f"video{v:02d}.mp4"
            if not path.exists():
                frames = textured_video(int(seconds * fps), h, w, seed=v, motion=(1, 2))
                write_video(path, frames, fps=fps)
        roots[res] = root
    return roots


def prepare_kubric(work: Path, examples: int) -> Path:
    from gmrw.datatools.tiny import write_tiny_movi_e

    root = work / f"tfds_movi_e_{examples}x24x256"
    if not (root / "movi_e" / "256x256" / "1.0.0" / "features.json").exists():
        write_tiny_movi_e(root, num_train=examples, num_validation=1, num_frames=24, size=(256, 256))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default="/tmp/gmrw_bench_loaders")
    parser.add_argument("--resolutions", default="340x256,640x360", help="Kinetics video sizes, WxH")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--frame-gap", type=int, default=20)
    parser.add_argument("--kubric-examples", type=int, default=6)
    parser.add_argument("--clips", type=int, default=24, help="timed clips per measurement")
    parser.add_argument("--img-size1", type=int, default=640)
    parser.add_argument("--img-size2", type=int, default=512)
    parser.add_argument("--skip-kubric", action="store_true")
    parser.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        help="also time the training loader with this many worker processes (0: skip)",
    )
    parser.add_argument(
        "--step-time",
        type=float,
        default=None,
        help="seconds per GPU training step (measured elsewhere): print the workers that keep it fed",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="per-GPU batch (the paper: 1)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    print(f"conditions: {conditions()}")

    torch.set_num_threads(1)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results = []

    from gmrw.data.kinetics import KineticsPairs
    from gmrw.video import read_frames

    t0 = time.perf_counter()
    roots = prepare_kinetics(work, args.resolutions.split(","), args.videos, args.seconds, args.fps)
    print(f"kinetics data ready in {time.perf_counter() - t0:.1f}s under {work}")
    for res, root in roots.items():
        ds = KineticsPairs(
            root, "train", args.img_size1, args.img_size2, "setting2", frame_gap=args.frame_gap
        )
        keys = [(i % len(ds), 1000 + i) for i in range(args.clips)]
        ds[keys[0]]  # warm-up (imports, first open)
        rng = np.random.default_rng(0)
        decode_rate, decode_med = _rate(
            lambda k, ds=ds, rng=rng: read_frames(ds.videos[k[0]], frame_gap=args.frame_gap, rng=rng), keys
        )
        full_rate, full_med = _rate(lambda k, ds=ds: ds[k], keys)
        results.append(
            {
                "source": f"kinetics {res} ({args.seconds:g}s@{args.fps}fps, gap {args.frame_gap})",
                "decode_clips_per_s": decode_rate,
                "full_clips_per_s": full_rate,
                "full_median_ms": full_med * 1e3,
                "loader_clips_per_s": loader_rate(ds, args.loader_workers, args.clips)
                if args.loader_workers
                else None,
            }
        )

    if not args.skip_kubric:
        from gmrw.data.kubric import KubricPairs

        t0 = time.perf_counter()
        root = prepare_kubric(work, args.kubric_examples)
        print(f"kubric data ready in {time.perf_counter() - t0:.1f}s under {root}")
        ds = KubricPairs(root, "train", args.img_size1, args.img_size2, "setting2")
        keys = [(i % len(ds), 2000 + i) for i in range(args.clips)]
        ds[keys[0]]
        decode_rate, _ = _rate(lambda k: ds.reader.video_frames(k[0], lambda n: (0, 1)), keys)
        full_rate, full_med = _rate(lambda k: ds[k], keys)
        record_mb = np.mean([n for _, _, n in ds.reader.records]) / 2**20
        results.append(
            {
                "source": f"kubric movi_e 24x256x256 (record {record_mb:.1f} MB)",
                "decode_clips_per_s": decode_rate,
                "full_clips_per_s": full_rate,
                "full_median_ms": full_med * 1e3,
                "loader_clips_per_s": loader_rate(ds, args.loader_workers, args.clips)
                if args.loader_workers
                else None,
            }
        )
        from gmrw.data.tapvid import TapVidDataset

        tracks = TapVidDataset("tapvid_kubric", root, split="train", resolution=None)
        tracks[0]
        rate, med = _rate(lambda k: tracks[k[0]], keys[: max(4, args.clips // 4)])
        results.append(
            {
                "source": "tapvid_kubric: all features + 256 tracks (per video)",
                "decode_clips_per_s": float("nan"),
                "full_clips_per_s": rate,
                "full_median_ms": med * 1e3,
                "loader_clips_per_s": None,
            }
        )

    print(
        f"\nper loader worker (one process, torch threads 1), crops {args.img_size1}->{args.img_size2}, "
        f"{args.clips} clips each; {conditions()}"
    )
    loader_head = f" {f'loader x{args.loader_workers} clips/s':>20s}" if args.loader_workers else ""
    print(
        f"{'source':58s} {'decode clips/s':>15s} {'full clips/s':>13s} {'full ms (median)':>17s}{loader_head}"
    )
    for r in results:
        loader = r.get("loader_clips_per_s")
        loader_cell = (f" {loader:20.1f}" if loader else f" {'-':>20s}") if args.loader_workers else ""
        print(
            f"{r['source']:58s} {r['decode_clips_per_s']:15.1f} {r['full_clips_per_s']:13.1f} "
            f"{r['full_median_ms']:17.1f}{loader_cell}"
        )

    print(
        f"\nworkers per GPU = ceil(batch x (1 / clips per s per worker) / GPU step time), batch {args.batch_size}"
    )
    if args.step_time is None:
        print("GPU step time: unmeasured here (pass --step-time SECONDS from a GPU measurement)")
    for r in results:
        if r["source"].startswith("tapvid_kubric"):
            continue  # evaluation, not a training loader
        if args.step_time is None:
            r["workers_needed"] = None
            continue
        r["workers_needed"] = workers_needed(r["full_clips_per_s"], args.step_time, args.batch_size)
        print(f"  {r['source']:58s} {r['workers_needed']:3d} worker(s) for {args.step_time:g} s/step")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"conditions": conditions(), "step_time": args.step_time, "results": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
