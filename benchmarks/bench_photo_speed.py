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
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


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
    args = parser.parse_args(argv)

    import torch

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
    dataset = PhotoTapVidDataset(num_videos=args.videos, seed=args.seed)
    rows = []
    for i in range(args.videos):
        example = dataset[i]
        refined = []
        refine = getattr(model, "refine", None)
        if refine is not None:  # count the pairs the transformer sees
            model.refine = lambda a, b, refine=refine, refined=refined: refined.append(len(a)) or refine(a, b)
        wall, cpu = time.perf_counter(), time.process_time()
        gmrw.track(model, example["video"][None], example["query_points"][None], **options)
        rows.append(
            {
                "video": i,
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
                "query_frames": len(torch.unique(example["query_points"][:, 0])),
                "pairs_refined": sum(refined),
            }
        )
        if refine is not None:
            del model.refine
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "threads": torch.get_num_threads(),
        "options": options,
        "checkpoint": args.checkpoint,
        "mean_wall_s": round(statistics.mean(r["wall_s"] for r in rows), 2),
        "mean_cpu_s": round(statistics.mean(r["cpu_s"] for r in rows), 2),
        "videos": rows,
    }
    print(
        f"{args.videos} videos, {args.mode} @ {args.size} px, {result['threads']} thread(s): "
        f"{result['mean_wall_s']} s a video (wall), {result['mean_cpu_s']} CPU s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
