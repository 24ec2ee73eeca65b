"""The fine-match step's training cost: seconds per step of make train's model step with the step off
and on, interleaved step by step so whatever else runs on the machine slows every setting alike.

A step is ``walk_loss`` forward, backward and AdamW on make train's batch (2 clips of 128x128 crops
from the synthetic world, texture bank 96); making the clips is excluded (it is the same for every
setting). Run it pinned, e.g. ``taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/bench_fine_step.py``;
the ratio between settings is the figure that travels, the seconds belong to the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SETTINGS = {
    "off": None,
    "half": {"channels": 32, "radius": 3},
    "half+full": {"channels": 32, "radius": 3, "pixel_channels": 16, "pixel_radius": 2},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per setting (after 2 warm-up)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    import gmrw
    from gmrw.data.synthetic import SyntheticTrainDataset
    from gmrw.losses import walk_loss
    from gmrw.models import GMRW

    gmrw.flush_denormals(True)
    clips = SyntheticTrainDataset(texture_bank=96, img_size2=128)
    runs = {}
    for name, fine in SETTINGS.items():
        torch.manual_seed(0)
        model = GMRW(fine_match=fine).train()
        runs[name] = (model, torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=1e-4), [])
    for i in range(args.steps + 2):
        batch = [clips[2 * i + k] for k in range(2)]
        frames = torch.stack([b["frames"] for b in batch])
        affines = torch.stack([b["affine_b2f"] for b in batch])
        for model, optimizer, times in runs.values():
            start = time.perf_counter()
            loss = walk_loss(model, frames, affines)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if i >= 2:
                times.append(time.perf_counter() - start)
    base = statistics.median(runs["off"][2])
    out = {}
    print("| fine_match | median s/step | mean s/step | × off (median) |")
    print("|---|---|---|---|")
    for name, (_, _, times) in runs.items():
        median = statistics.median(times)
        out[name] = {"median": round(median, 3), "mean": round(statistics.fmean(times), 3)}
        print(f"| {name} | {median:.3f} | {statistics.fmean(times):.3f} | {median / base:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
