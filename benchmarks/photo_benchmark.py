"""Score trackers on the real-photo benchmark (gmrw.data.photo_videos): identity, OpenCV
Lucas–Kanade, and any GMRW checkpoints, side by side.

    python benchmarks/photo_benchmark.py                                   # the two baselines
    python benchmarks/photo_benchmark.py --checkpoint runs/synthetic/<run> # + a checkpoint, its defaults
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128 --setting chained@256
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128@8   # + round-trip check, 8 px
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128@16@weighted_argmax:3

A checkpoint is tracked with ``gmrw.track``'s defaults for it (what it records) unless
``--setting MODE@SIZE[@ROUND_TRIP[@METHOD[:WINDOW]]]`` are given (SIZE: the short side the model
sees; ROUND_TRIP: direct mode's round-trip occlusion check in px, ``-`` for none; METHOD: the flow
read-out, with its window in feature cells). Queries are
TAP-Vid "first" mode; metrics as gmrw-eval (tapnet's rule), averaged over videos. Needs
``opencv-python-headless`` (a dev dependency) for Lucas–Kanade.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tracker_settings import checkpoint_file, parse_setting, tracker_label


def score(example: dict, tracks: torch.Tensor, occluded: torch.Tensor) -> np.ndarray:
    """(AJ, <δavg, OA) of one video's prediction."""
    from gmrw.metrics.tapvid import compute_tapvid_metrics

    m = compute_tapvid_metrics(
        example["query_points"][None],
        example["occluded"][None],
        example["target_points"][None],
        occluded.reshape(1, *example["occluded"].shape),
        tracks.reshape(1, *example["target_points"].shape),
        "first",
    )
    return np.array([m["average_jaccard"][0], m["average_pts_within_thresh"][0], m["occlusion_accuracy"][0]])


def run_tracker(name: str, examples: list[dict], fn) -> dict:
    rows, start = [], time.perf_counter()
    for example in examples:
        tracks, occluded = fn(example)
        rows.append(score(example, tracks, occluded))
    rows = np.array(rows)
    aj, delta, oa = np.nanmean(rows, axis=0)
    return {
        "tracker": name,
        "aj": round(float(aj), 4),
        "delta_avg": round(float(delta), 4),
        "oa": round(float(oa), 4),
        "seconds_per_video": round((time.perf_counter() - start) / len(examples), 2),
        "per_video_aj": [round(float(v), 4) for v in rows[:, 0]],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="a gmrw .ckpt, run dir or .pth")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="MODE@SIZE[@ROUND_TRIP[@METHOD[:WINDOW]]]"
    )
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="which benchmark draw")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.setting] or [{}]
    except ValueError as error:
        parser.error(str(error))

    import gmrw
    from gmrw.data.photo_videos import PhotoTapVidDataset
    from gmrw.tracking.baselines import identity_tracks, lucas_kanade_tracks

    gmrw.flush_denormals(True)
    dataset = PhotoTapVidDataset(num_videos=args.videos, seed=args.seed)
    examples = [dataset[i] for i in range(len(dataset))]
    results = []
    if not args.no_baselines:
        results.append(
            run_tracker(
                "identity", examples, lambda e: identity_tracks(e["video"].shape[0], e["query_points"])
            )
        )
        results.append(
            run_tracker(
                "Lucas–Kanade (OpenCV, chained, FB check)",
                examples,
                lambda e: lucas_kanade_tracks(e["video"], e["query_points"]),
            )
        )
    for checkpoint in args.checkpoint:
        path = checkpoint_file(checkpoint)
        model = gmrw.load_model(path)
        for options in settings:
            label = tracker_label(path, gmrw.tracking.resolve_options(model, **options))

            def fn(e, options=options, model=model):
                tracks, occluded = gmrw.track(model, e["video"][None], e["query_points"][None], **options)
                return tracks[0], occluded[0]

            results.append(run_tracker(label, examples, fn))
            print(f"{label}: AJ {results[-1]['aj']:.3f}", flush=True)
    print(f"| tracker ({args.videos} videos) | AJ | <δavg | OA | s/video |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['tracker']} | {r['aj']:.3f} | {r['delta_avg']:.3f} | {r['oa']:.3f} | {r['seconds_per_video']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
