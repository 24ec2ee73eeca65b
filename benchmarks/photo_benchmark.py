"""Score trackers on the real-photo benchmark (gmrw.data.photo_videos): identity, OpenCV
Lucas–Kanade, and any GMRW checkpoints, side by side.

    python benchmarks/photo_benchmark.py                                   # the two baselines
    python benchmarks/photo_benchmark.py --checkpoint runs/synthetic/<run> # + a checkpoint, its defaults
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128 --setting chained@256
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128@8   # + round-trip check, 8 px
    python benchmarks/photo_benchmark.py --checkpoint ckpt --setting direct@128@16@weighted_argmax:3

A checkpoint is tracked with ``gmrw.track``'s defaults for it (what it records) unless
``--setting MODE@SIZE[/FINE][@ROUND_TRIP[@METHOD[:WINDOW]]]`` are given (MODE: ``chained``, or
``direct`` with ``+chain`` for the chained candidate and ``+correct`` for the round-trip correction,
each off unless named, whatever the checkpoint records; SIZE: the short side the model sees;
FINE: the short side the fine-match step's maps come from, 0 the video's own;
ROUND_TRIP: direct mode's round-trip occlusion check in px, ``-`` for none; METHOD: the flow
read-out, with its window in feature cells). Queries are TAP-Vid "first" mode; metrics as
gmrw-eval (tapnet's rule), averaged over videos. Needs ``opencv-python-headless`` (a dev
dependency) for Lucas–Kanade.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tracker_settings import add_tracker_arguments, parsed_trackers, tracker_label, tracker_progress

from gmrw.choices import TRACKING_PRECISIONS


def score(example: dict, tracks: torch.Tensor, occluded: torch.Tensor) -> np.ndarray:
    """(AJ, <δavg, OA, then the fraction of visible points within each of THRESHOLDS px) of one
    video's prediction."""
    from gmrw.metrics.tapvid import THRESHOLDS, compute_tapvid_metrics

    m = compute_tapvid_metrics(
        example["query_points"][None],
        example["occluded"][None],
        example["target_points"][None],
        occluded.reshape(1, *example["occluded"].shape),
        tracks.reshape(1, *example["target_points"].shape),
        "first",
    )
    within = [m[f"pts_within_{x}"][0] for x in THRESHOLDS]
    return np.array(
        [m["average_jaccard"][0], m["average_pts_within_thresh"][0], m["occlusion_accuracy"][0], *within]
    )


def run_tracker(name: str, examples: list[dict], fn) -> dict:
    rows, start = [], time.perf_counter()
    # the running mean AJ says where a run is and whether it is worth waiting for
    bar = tracker_progress(name, "video", examples)
    for example in bar:
        tracks, occluded = fn(example)
        rows.append(score(example, tracks, occluded))
        bar.set_postfix_str(f"AJ {np.nanmean([r[0] for r in rows]):.3f}")
    rows = np.array(rows)
    means = np.nanmean(rows, axis=0)
    aj, delta, oa = means[:3]
    return {
        "tracker": name,
        "aj": round(float(aj), 4),
        "delta_avg": round(float(delta), 4),
        "oa": round(float(oa), 4),
        "seconds_per_video": round((time.perf_counter() - start) / len(examples), 2),
        # fraction of visible points within 1 / 2 / 4 / 8 / 16 px (THRESHOLDS), averaged over videos
        "within": [round(float(v), 4) for v in means[3:]],
        "per_video_aj": [round(float(v), 4) for v in rows[:, 0]],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_tracker_arguments(parser)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument(
        "--start", type=int, default=0, help="score videos START..VIDEOS-1 only (split a run over cores)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which benchmark draw")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument(
        "--fine",
        choices=("on", "off", "both"),
        default="on",
        help="checkpoints with the fine-match step: track with it (on), with the coarse match only (off), or both",
    )
    parser.add_argument(
        "--precision",
        choices=TRACKING_PRECISIONS,
        default="fp32",
        help="the encoder's and transformer's arithmetic (gmrw.track's precision; bf16 pays on AMX CPUs)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if not 0 <= args.start < args.videos:
        parser.error(
            f"--start {args.start} selects no video: videos START..VIDEOS-1 (--videos {args.videos})"
        )
    checkpoints, settings = parsed_trackers(parser, args)

    import gmrw
    from gmrw.data.photo_videos import PhotoTapVidDataset
    from gmrw.tracking.baselines import identity_tracks, lucas_kanade_tracks

    gmrw.flush_denormals(True)
    dataset = PhotoTapVidDataset(num_videos=args.videos, seed=args.seed)
    examples = [dataset[i] for i in range(args.start, len(dataset))]
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
    for path in checkpoints:
        model = gmrw.load_model(path)
        has_fine = getattr(model, "fine_match", None) is not None
        fine_modes = {"on": [True], "off": [False], "both": [True, False]}[args.fine] if has_fine else [None]
        for options, fine_on in [(o, f) for o in settings for f in fine_modes]:
            if fine_on is not None:
                model.fine_match_enabled = fine_on
            label = tracker_label(path, gmrw.tracking.resolve_options(model, **options))
            if fine_on is not None:  # "GMRW name (…)" → "GMRW name (…, fine step)"
                label = label[:-1] + (", fine step)" if fine_on else ", coarse only)")
            if args.precision != "fp32":
                label = label[:-1] + f", {args.precision})"

            def fn(e, options=options, model=model):
                tracks, occluded = gmrw.track(
                    model, e["video"][None], e["query_points"][None], precision=args.precision, **options
                )
                return tracks[0], occluded[0]

            results.append(run_tracker(label, examples, fn))
            print(f"{label}: AJ {results[-1]['aj']:.3f}", flush=True)
    print(f"| tracker ({len(examples)} videos) | AJ | <δavg | OA | within 1 / 2 / 4 / 8 / 16 px | s/video |")
    print("|---|---|---|---|---|---|")
    for r in results:
        within = " / ".join(f"{v:.2f}" for v in r["within"])
        print(
            f"| {r['tracker']} | {r['aj']:.3f} | {r['delta_avg']:.3f} | {r['oa']:.3f} | {within} "
            f"| {r['seconds_per_video']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
