"""Benchmark dense and online tracking with gmrw.Predictor: time and peak memory of dense tracks
(every pixel, every 4th) against a sparse 8×8 grid on the same clip, and per-frame latency of an
online session.

    python benchmarks/bench_dense_online.py                        # 256×256 × 50 frames, on the CPU
    python benchmarks/bench_dense_online.py --frames 20 --configs grid8 online

The clip is a smooth random texture moving 1-2 px per frame (gmrw.datatools.tiny.textured_video),
the model the paper's architecture at random initialisation tracking at 256×256 (processing size
256, weighted-sum flows, chained mode unless the config says direct), with CPU denormals flushed as
gmrw-track runs. Each configuration runs in a fresh worker process (benchmarks/harness.py), so its
peak memory is its own: the RSS high-water mark (VmHWM) above the RSS once model and clip are
loaded, or the CUDA allocator's peak on a GPU. Online latency: one ``session.step`` per frame with
the 8×8 grid as queries; the first frame only encodes, so the median is over frames 2..T.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from harness import peak_rss_bytes, reset_peak_rss, rss_bytes, run_worker

MIB = 1024**2
CONFIGS = {
    "grid8": {"grid_size": 8},
    "dense4": {"dense": 4},
    "dense1": {"dense": 1},
    "dense4-direct": {"dense": 4, "mode": "direct"},
    "online": {"online": True},
}


def worker(name: str, frames: int, size: int, device_name: str) -> dict:
    import numpy as np
    import torch

    from gmrw.datatools.tiny import textured_video
    from gmrw.models import GMRW
    from gmrw.tracking import Predictor
    from gmrw.tracking.outputs import save_dense, save_tracks

    config = dict(CONFIGS[name])
    torch.manual_seed(0)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    predictor = Predictor(GMRW(), device, processing_size=size, mode=config.pop("mode", None))
    video = textured_video(frames, size, size, seed=0)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        loaded = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        loaded = rss_bytes()
    result: dict = {"config": name, "frames": frames, "size": size, "device": device_name}
    if config.pop("online", False):
        session = predictor.online()
        session.add_queries(predictor.make_queries(predictor.open(video), grid_size=8)[:, 1:])
        steps = []
        for frame in video:
            sync()
            start = time.perf_counter()
            session.step(frame)
            sync()
            steps.append(time.perf_counter() - start)
        result.update(
            points=session.num_queries,
            seconds=sum(steps),
            step_median_s=statistics.median(steps[1:]),
            step_p90_s=float(np.percentile(steps[1:], 90)),
            first_step_s=steps[0],
            session_bytes=session.memory_bytes(),
        )
    else:
        sync()
        start = time.perf_counter()
        tracks, occluded = predictor(video, **config)
        sync()
        result.update(points=len(tracks), seconds=time.perf_counter() - start)
        # What the outputs weigh on disk: float32 + bool, and (dense) the compact layout.
        import tempfile
        from pathlib import Path

        queries = torch.zeros(len(tracks), 3)
        with tempfile.TemporaryDirectory() as folder:
            plain = save_tracks(Path(folder) / "p.npz", tracks, occluded, queries, (size, size))
            result["npz_bytes"] = plain.stat().st_size
            if "dense" in config:
                queries = predictor.make_queries(predictor.open(video), dense=config["dense"])
                compact = save_dense(
                    Path(folder) / "d.npz", tracks, occluded, queries, config["dense"], (size, size)
                )
                result["compact_npz_bytes"] = compact.stat().st_size
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()
    result["peak_bytes"] = peak - loaded
    result["threads"] = torch.get_num_threads()
    return result


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def table(results: list[dict]) -> str:
    r0 = results[0]
    lines = [
        f"gmrw.Predictor on a {r0['size']}×{r0['size']} × {r0['frames']}-frame clip, paper architecture "
        f"(random init), {r0['threads']} threads, {r0['device']}",
        f"{'config':<14} {'points':>7} {'seconds':>8} {'s/frame':>8} {'peak MiB':>9} {'npz MiB':>8} {'compact MiB':>12}",
    ]
    for r in results:
        compact = f"{r['compact_npz_bytes'] / MIB:.1f}" if "compact_npz_bytes" in r else "-"
        npz = f"{r['npz_bytes'] / MIB:.1f}" if "npz_bytes" in r else "-"
        lines.append(
            f"{r['config']:<14} {r['points']:>7} {r['seconds']:>8.1f} {r['seconds'] / r['frames']:>8.2f} "
            f"{r['peak_bytes'] / MIB:>9.0f} {npz:>8} {compact:>12}"
        )
    for r in results:
        if "step_median_s" in r:
            lines.append(
                f"online: {1000 * r['step_median_s']:.0f} ms per frame (median of frames 2..{r['frames']}; "
                f"p90 {1000 * r['step_p90_s']:.0f} ms; first frame {1000 * r['first_step_s']:.0f} ms), "
                f"session holds {r['session_bytes'] / 1024:.0f} KiB"
            )
    lines.append("peak: RSS high-water mark above the loaded model and clip (CUDA: allocator peak).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), help="default: all")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the workers")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.frames, args.size, args.device)))
        return
    print(f"load before: {load()}", file=sys.stderr)
    results = []
    for name in args.configs or list(CONFIGS):
        worker_args = [name, "--frames", str(args.frames), "--size", str(args.size), "--device", args.device]
        results.append(run_worker(__file__, worker_args, args.threads, f"{name} on {args.device}"))
    print(table(results))
    print(f"load after: {load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
