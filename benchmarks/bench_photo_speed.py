"""Seconds per video of tracking the real-photo benchmark (gmrw.data.photo_videos: 16-frame 256×256
videos, TAP-Vid "first" queries), as ``benchmarks/photo_benchmark.py`` tracks it: issue 22's speed
target (256-px processing, direct mode).

    python benchmarks/bench_photo_speed.py                              # 4 videos, direct @ 256 px
    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/bench_photo_speed.py --videos 16
    taskset -c 0,1 env OMP_NUM_THREADS=2 python benchmarks/bench_photo_speed.py --videos 16
    python benchmarks/bench_photo_speed.py --checkpoint runs/synthetic/<run> --mode chained

The model is a checkpoint tracked with its own defaults but ``--mode``/``--size``, or, without
one, the paper's architecture at random initialisation with ``make train``'s read-out
(weighted_argmax within 2 cells, round-trip check at 16 px): the cost does not depend on the
weights. CPU denormals are flushed as gmrw-eval and gmrw-track run. Per video: wall seconds, the
process's CPU seconds (on a machine shared with other work, CPU seconds of a one-thread run are
the steadier figure), the number of distinct query frames (direct mode refines one pair per
query frame and other frame) and, where the tracker counts them, the pairs refined. Runs on any
gmrw version that has ``gmrw.track`` (to measure before and after a change).

``--floor`` (this version only) also measures what one frame's encoding and one pair's refinement
cost at the processing size (FLOPs by ``torch.utils.flop_counter``, CPU seconds as the median of 3
after a warm-up) and gives each video its floor: pairs × refinement + frames × encoding, the cost
of the model alone, before any matching or tracking. ``--no-track`` prints only the floors.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/bench_photo_speed.py --videos 16 --floor --no-track

``--precision bf16`` (or ``auto``) tracks with the encoder and transformer under bfloat16 autocast
(``gmrw.track``'s ``precision``; the floor's stages are then timed under it too): fast on CPUs
with AMX, far slower on x86 cores without (the figures say which this one is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def median_cpu_seconds(fn, repeats: int = 3) -> float:
    """CPU seconds of ``fn()`` (median of ``repeats``, after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def stage_costs(model: torch.nn.Module, size: tuple[int, int], dtype: torch.dtype | None = None) -> dict:
    """GFLOP and CPU seconds of encoding one frame and refining one pair of (H', W') = ``size``
    (timed under autocast to ``dtype``, if given)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from gmrw.tracking.precision import reduced_precision

    frames = torch.rand(2, 3, *size) * 255
    with torch.no_grad():
        encoded = model.encode(frames)
        one, other = encoded[:1], encoded[1:]
        # The counter sees attention's FLOPs only through the math kernel; time the default one.
        with FlopCounterMode(display=False) as encode_flops:
            model.encode(frames[:1])
        with FlopCounterMode(display=False) as refine_flops, sdpa_kernel(SDPBackend.MATH):
            model.refine(one, other)
        with reduced_precision("cpu", dtype):
            encode_s = median_cpu_seconds(lambda: model.encode(frames)) / 2
            refine_s = median_cpu_seconds(lambda: model.refine(one, other))
        return {
            "encode_gflop": round(encode_flops.get_total_flops() / 1e9, 2),
            "refine_gflop": round(refine_flops.get_total_flops() / 1e9, 2),
            "encode_cpu_s": round(encode_s, 4),
            "refine_cpu_s": round(refine_s, 4),
        }


def timed_track(model: torch.nn.Module, video: torch.Tensor, queries: torch.Tensor, options: dict) -> dict:
    """Wall and CPU seconds of ``gmrw.track`` on one video, and the pairs its transformer refined."""
    import gmrw

    refined = []
    refine = getattr(model, "refine", None)
    if refine is not None:  # count the pairs the transformer sees
        model.refine = lambda a, b: refined.append(len(a)) or refine(a, b)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        gmrw.track(model, video, queries, **options)
    finally:
        if refine is not None:
            del model.refine
    return {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "pairs_refined": sum(refined),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a gmrw .ckpt, run directory or .pth (default: random weights)")
    parser.add_argument("--videos", type=int, default=4, help="the first N videos of the benchmark")
    parser.add_argument("--seed", type=int, default=0, help="which benchmark draw")
    parser.add_argument(
        "--size", type=int, default=256, help="processing size: the short side the model sees"
    )
    parser.add_argument("--mode", default="direct", choices=("direct", "chained"))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--floor", action="store_true", help="also each video's floor (model FLOPs, seconds)")
    parser.add_argument("--no-track", action="store_true", help="with --floor: the floors only")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="gmrw.track's precision"
    )
    args = parser.parse_args(argv)

    import gmrw
    from gmrw.data.photo_videos import PhotoTapVidDataset

    gmrw.flush_denormals(True)
    torch.manual_seed(0)
    if args.checkpoint:
        model = gmrw.load_model(args.checkpoint)
        options = {"mode": args.mode, "processing_size": args.size}
    else:
        model = gmrw.load_model(None)
        options = {
            "mode": args.mode,
            "processing_size": args.size,
            "method": "weighted_argmax",
            "window": 2.0,
        }
        if args.mode == "direct":
            options["round_trip"] = 16.0
    if args.precision != "fp32":  # versions before the option have only fp32
        options["precision"] = args.precision
    dataset = PhotoTapVidDataset(num_videos=args.videos, seed=args.seed)
    costs = None
    rows = []
    for i in range(args.videos):
        example = dataset[i]
        video, queries = example["video"][None], example["query_points"][None]
        row = {"video": i, "query_frames": len(torch.unique(queries[0, :, 0]))}
        if args.floor:
            from gmrw.tracking.frames import scaled_size
            from gmrw.tracking.modes import count_pairs

            if costs is None:
                from gmrw.tracking.precision import compute_dtype

                dtype = compute_dtype(args.precision, "cpu")
                costs = stage_costs(model, scaled_size(*video.shape[2:4], args.size), dtype)
                print(json.dumps(costs), flush=True)
            pairs, frames = count_pairs(args.mode, queries, video.shape[1]), video.shape[1]
            row["pairs"] = pairs
            row["floor_gflop"] = round(pairs * costs["refine_gflop"] + frames * costs["encode_gflop"], 1)
            row["floor_cpu_s"] = round(pairs * costs["refine_cpu_s"] + frames * costs["encode_cpu_s"], 2)
        if not (args.floor and args.no_track):
            row.update(timed_track(model, video, queries, options))
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"threads": torch.get_num_threads(), "options": options, "checkpoint": args.checkpoint}
    result.update({"stage_costs": costs} if costs else {})
    for key in ("wall_s", "cpu_s", "floor_gflop", "floor_cpu_s"):
        if key in rows[0]:
            result[f"mean_{key}"] = round(statistics.mean(r[key] for r in rows), 2)
    result["videos"] = rows
    summary = ", ".join(f"{k[5:]} {v}" for k, v in result.items() if k.startswith("mean_"))
    print(
        f"{args.videos} videos, {args.mode} @ {args.size} px, {args.precision}, {result['threads']} thread(s), "
        f"a video: {summary}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
