"""Check a GPU machine: parity, training, flows and evaluation on CUDA, in one table.

An orchestrator: the parity checks are benchmarks/reference_parity.py's, the timing and memory
readings benchmarks/timing.py's, the configs composed by :func:`gmrw.paths.compose_config`, the bare
steps' inputs and reference model benchmarks/bench_model.py's.

    python benchmarks/gpu_check.py --json gpu_check.json                      # on a CUDA machine
    python benchmarks/gpu_check.py --json gpu_check.json --reference /tmp/gmrw_ref
    python benchmarks/gpu_check.py --small --json small.json                  # the CPU mode (no CUDA)

What it does, in order:

parity
    Our model on the device, on the shared reference fixtures (``$GMRW_FIXTURES`` or
    ``--fixtures``): transition, flows (four read-outs), walk losses and accuracy, every
    parameter's gradient norm, and tracks (chained and direct, ×1). Each is checked against the
    fixture by the checks the CPU parity tests use (benchmarks/reference_parity.py: float32 bounds
    for the transition and flows, fixed tolerances for the rest), and, on CUDA, against the same
    outputs computed on our CPU with the same checks. TF32 is off here: these are fp32 checks.
train
    ``trainer.max_steps`` steps of the paper's Kubric setting (512×512 crops of 640×640 frames,
    batch 1, smoothness on) through ``gmrw-train``'s own path (the composed ``train`` config,
    :func:`gmrw.training.run.train`) with ``trainer=gpu`` (bf16-mixed), on the procedural synthetic
    frames at that size. s/step is the median of the steps after the first three (a callback
    times batch start to batch end, synchronised, so data loading is not in it; the wall time per
    step, loading included, is beside it); memory is ``torch.cuda.max_memory_allocated``.
steps
    Bare ``walk_loss`` + backward steps on the same device and crop, fp32 and bf16 autocast, ours
    and, with ``--reference`` (a checkout of ayshrv/gmrw, see benchmarks/bench_model.py), the
    paper's own code on the same weights and inputs (each reference run in its own process).
    Without a checkout the reference rows say so; no number is filled in.
flow
    One flow of a DAVIS-size pair (256×256) upsampled ×4 (1024×1024 into the model), for each
    read-out, as tracking computes it (:class:`gmrw.tracking.flows.FlowReader`): time and peak memory.
eval
    ``gmrw-eval`` (:func:`gmrw.evaluation.run.evaluate`) with ``trainer=gpu`` on 2 synthetic TAP-Vid
    DAVIS videos at ×4 (random weights: the scores mean nothing, the run must finish with finite ones).

Without CUDA (or with ``--small``) the same code paths run on the CPU at a small size (64-px
crops, 2 steps, 32-px videos ×4, bf16-mixed training as on the GPU) with peak RSS as the memory
figure; tests/test_gpu_check.py runs that mode. Exit status 1 if a parity check fails or a section
raises.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from harness import run_worker
from reference_parity import compare, fixture_expected, fixture_outputs
from timing import memory_kind, peak_bytes, reset_peak, steady, timed

from gmrw.paths import compose_config

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("parity", "train", "steps", "flow", "eval")

#: Read-outs timed in the flow section (weighted_argmax with the fixtures' 5-cell window).
FLOW_METHODS = (("weighted_sum", None), ("argmax", None), ("weighted_argmax", 5.0))


@dataclass(frozen=True)
class Sizes:
    """How big each section runs."""

    crop: int  # training crop side (px)
    frame: int  # training frame side (px), cropped to ``crop``
    steps: int  # training steps
    bare_repeats: int  # timed bare steps after a warm-up
    pair_side: int  # flow section: the DAVIS-size frame side before ×4
    eval_side: int  # eval section: video side before ×4
    eval_frames: int
    flow_repeats: int
    num_workers: int  # training data loader workers


FULL = Sizes(crop=512, frame=640, steps=30, bare_repeats=5, pair_side=256, eval_side=256, eval_frames=24,
             flow_repeats=3, num_workers=4)  # fmt: skip
SMALL = Sizes(crop=64, frame=80, steps=2, bare_repeats=1, pair_side=32, eval_side=32, eval_frames=6,
              flow_repeats=1, num_workers=0)  # fmt: skip
UPSAMPLE = 4


# ----------------------------------------------------------------------------------- parity
def parity_section(fixtures: Path | None, device: torch.device) -> dict:
    from gmrw.models import flush_denormals

    if fixtures is None or not (fixtures / "model.pt").is_file():
        return {"skipped": f"no reference fixtures at {fixtures} (set GMRW_FIXTURES or --fixtures)"}
    flush_denormals(True)  # as gmrw's CPU entry points run
    # fp32 checks: no TF32 in matmuls or convolutions
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    start = time.perf_counter()
    expected = fixture_expected(fixtures)
    on_device = fixture_outputs(fixtures, device)
    rows = compare(on_device, expected, "reference fixture")
    if device.type != "cpu":
        rows += compare(on_device, fixture_outputs(fixtures, torch.device("cpu")), "our CPU")
    return {
        "fixtures": str(fixtures),
        "checks": rows,
        "passed": all(r["passed"] for r in rows),
        "seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------ train
def train_section(sizes: Sizes, device: torch.device, workdir: Path, compile_model: bool) -> dict:
    from omegaconf import open_dict

    from gmrw.training.run import train

    output_dir = workdir / "train"
    output_dir.mkdir(parents=True, exist_ok=True)
    timings = output_dir / "step_timer.json"
    trainer = (
        ["trainer=gpu"] if device.type == "cuda" else ["trainer=default", "trainer.precision=bf16-mixed"]
    )
    f, c = sizes.frame, sizes.crop
    overrides = [
        *trainer,
        f"trainer.max_steps={sizes.steps}",
        "+trainer.limit_val_batches=0",
        "trainer.log_every_n_steps=1",
        "validate_before_training=false",
        "auto_resume=false",
        "logger=none",
        "callbacks=none",
        "data.batch_size=1",
        f"data.num_workers={sizes.num_workers}",
        f"data.train_set.frame_size=[{f},{f}]",
        f"data.train_set.img_size1=[{f},{f}]",
        f"data.train_set.img_size2=[{c},{c}]",
        "data.train_set.texture_bank=4",
        "data.val_sets=null",
        # the paper's smoothness term on from the first step (its curriculum starts it at 5k)
        "model.smoothness_curriculum.enabled=false",
        "model.smoothness_curriculum.constant_weight=200.0",
        f"model.compile={str(compile_model).lower()}",
    ]
    cfg = compose_config("train", overrides, output_dir)
    with open_dict(cfg):
        # Hydra imports it by name: run as a script, benchmarks/ is on sys.path
        cfg.callbacks = {"step_timer": {"_target_": "timing.StepTimer", "output": str(timings)}}
    start = time.perf_counter()
    summary = train(cfg)
    total = time.perf_counter() - start
    measured = json.loads(timings.read_text())
    loss = summary.get("last", {}).get("train/loss")
    return {
        "crop": c,
        "frame": f,
        "batch": 1,
        "steps": len(measured["step_seconds"]),
        "precision": str(cfg.trainer.precision),
        "compiled": compile_model,
        "seconds_per_step": steady(measured["step_seconds"]),
        "wall_seconds_per_step": steady(measured["wall_seconds"]),
        "first_step_seconds": measured["step_seconds"][0],
        "step_seconds": measured["step_seconds"],
        "peak_bytes": measured["peak_bytes"],
        "memory": memory_kind(device),
        "last_loss": loss,
        "status": summary.get("status"),
        "total_seconds": total,
    }


# ------------------------------------------------------------------------------------ steps
def bare_step(impl: str, precision: str, size: int, repeats: int, device: torch.device,
              reference: str | None = None) -> dict:  # fmt: skip
    """Median time and peak memory of ``walk_loss`` + backward (ours) or the reference's forward +
    backward, at ``size``, batch 1, smoothness weight 0.5, on the same seeded weights and inputs."""
    from bench_model import inputs, reference_model

    from gmrw.losses import walk_loss
    from gmrw.models import GMRW, flush_denormals

    flush_denormals(True)
    torch.manual_seed(0)
    model = GMRW()
    if impl == "ref":
        model = reference_model(reference, model.state_dict(), str(device))
    model = model.to(device).train()
    frames, affine = (t.to(device) for t in inputs(size))
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )

    def run() -> float:
        model.zero_grad(set_to_none=True)
        with autocast():
            if impl == "ref":
                loss = model(frames, affine, 0.5)[1]
            else:
                loss = walk_loss(model, frames, affine, 0.5)["loss"]
        loss.backward()
        return loss.item()

    reset_peak(device)
    value, seconds = timed(run, repeats, device)
    return {"impl": impl, "precision": precision, "size": size, "loss": value, "seconds": seconds,
            "peak_bytes": peak_bytes(device), "memory": memory_kind(device)}  # fmt: skip


def steps_section(sizes: Sizes, device: torch.device, reference: str | None) -> dict:
    rows = {}
    for precision in ("fp32", "bf16"):
        rows[f"ours-{precision}"] = bare_step("ours", precision, sizes.crop, sizes.bare_repeats, device)
    for precision in ("fp32", "bf16"):
        name = f"ref-{precision}"
        if not reference:
            rows[name] = {"unavailable": "no --reference checkout given"}
            continue
        args = ["ref", precision, "--size", str(sizes.crop), "--repeats", str(sizes.bare_repeats),
                "--device", str(device), "--reference", reference]  # fmt: skip
        try:  # its own process: the reference's stub modules stay out of this one
            rows[name] = run_worker(__file__, ["step", *args], None, f"reference {precision} step")
        except RuntimeError as error:
            rows[name] = {"unavailable": str(error).splitlines()[-1][:300]}
    return rows


# ------------------------------------------------------------------------------------- flow
def pair_flow(reader, frames: torch.Tensor) -> torch.Tensor:
    """(2, H, W, 3) frames → (1, 2, H, W) flow frame 0 → 1, as the tracker computes it."""
    with torch.no_grad():
        encoded = reader.encode(frames)
        return reader.one_way(encoded[:1], encoded[1:])


def flow_section(sizes: Sizes, device: torch.device) -> dict:
    from bench_model import inputs

    from gmrw.models import GMRW, flush_denormals
    from gmrw.tracking.flows import FlowReader

    flush_denormals(True)
    torch.manual_seed(0)
    model = GMRW().to(device).eval()
    side = sizes.pair_side
    frames = inputs(side)[0][0, :2].permute(0, 2, 3, 1).contiguous()  # (2, S, S, 3) in [0, 255]
    rows = {}
    for method, window in FLOW_METHODS:
        reader = FlowReader(model, (side, side), (UPSAMPLE * side, UPSAMPLE * side), method, window)
        reset_peak(device)
        flow, seconds = timed(lambda reader=reader: pair_flow(reader, frames), sizes.flow_repeats, device)
        name = method if window is None else f"{method}@{window:g}"
        rows[name] = {
            "input": UPSAMPLE * side,
            "seconds": seconds,
            "peak_bytes": peak_bytes(device),
            "memory": memory_kind(device),
            "mean_abs_flow": flow.abs().mean().item(),
            "finite": bool(torch.isfinite(flow).all()),
        }
    return rows


# ------------------------------------------------------------------------------------- eval
def eval_section(sizes: Sizes, device: torch.device, workdir: Path) -> dict:
    from gmrw.datatools.tiny import write_tapvid_pickle
    from gmrw.evaluation.run import evaluate

    side = sizes.eval_side
    pickle = write_tapvid_pickle(workdir / "tapvid_davis.pkl", num_videos=2, num_frames=sizes.eval_frames,
                                 size=(side, side), num_points=8)  # fmt: skip
    overrides = [
        "trainer=gpu" if device.type == "cuda" else "trainer=default",
        f"data.path={pickle}",
        f"data.resolution=[{side},{side}]",
        "model.checkpoint=null",
        f"tracking.upsample_factor={UPSAMPLE}",
    ]
    cfg = compose_config("eval", overrides, workdir / "eval")
    reset_peak(device)
    report = evaluate(cfg)
    means = report["means"]
    return {
        "videos": means["num_videos"],
        "frames": sizes.eval_frames,
        "side": side,
        "upsample_factor": UPSAMPLE,
        "precision": report["settings"]["precision"],
        "accelerator": report["settings"]["accelerator"],
        "seconds": report["wall_time_s"],
        "per_video_seconds": [row.get("seconds") for row in report["per_video"]],
        "peak_bytes": peak_bytes(device),
        "memory": memory_kind(device),
        "average_jaccard": means["average_jaccard"],
        "average_pts_within_thresh": means["average_pts_within_thresh"],
    }


# ------------------------------------------------------------------------------------ table
def gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def parity_rows(parity: dict, row) -> None:
    if "skipped" in parity:
        row("parity", note=f"SKIPPED: {parity['skipped']}")
        return
    failed = [r for r in parity["checks"] if not r["passed"]]
    verdict = "all passed" if not failed else f"{len(failed)} FAILED"
    row(f"parity: {len(parity['checks'])} checks", parity["seconds"], note=verdict)
    for r in failed:
        row(f"  FAILED {r['check']} vs {r['against']}", note=f"{r['value']:.3g} > {r['tolerance']:.3g}")


def train_rows(train: dict, row) -> None:
    what = f"train: {train['crop']}px crop, batch 1, {train['precision']}, s/step"
    note = (
        f"{train['steps']} steps; wall {train['wall_seconds_per_step']:.3f} s/step with loading; "
        f"first {train['first_step_seconds']:.1f} s; loss {train['last_loss']}"
    )
    row(
        what,
        train["seconds_per_step"],
        train["peak_bytes"],
        note + ("; compiled" if train["compiled"] else ""),
    )


def steps_rows(steps: dict, row) -> None:
    for name, r in steps.items():
        if "unavailable" in r:
            row(f"step {name} (loss + backward)", note=f"unavailable: {r['unavailable']}")
        else:
            row(f"step {name} (loss + backward)", r["seconds"], r["peak_bytes"], f"loss {r['loss']:.5f}")


def flow_rows(flow: dict, row) -> None:
    for name, r in flow.items():
        what = f"flow {name}, {r['input']}x{r['input']} input"
        row(what, r["seconds"], r["peak_bytes"], f"mean |flow| {r['mean_abs_flow']:.2f}px")


def eval_rows(ev: dict, row) -> None:
    what = f"gmrw-eval: {ev['videos']} videos x{ev['frames']} frames, x{ev['upsample_factor']}"
    note = f"{ev['accelerator']} {ev['precision']}; AJ {ev['average_jaccard']:.3f} (random weights)"
    row(what, ev["seconds"], ev["peak_bytes"], note)


SECTION_ROWS = {
    "parity": parity_rows,
    "train": train_rows,
    "steps": steps_rows,
    "flow": flow_rows,
    "eval": eval_rows,
}


def table(result: dict) -> str:
    """The one table the check prints: a row per measurement, a note per row."""
    mode = "small CPU mode" if result["small"] else "full size"
    lines = [
        f"gmrw GPU check on {result['device_name']} ({mode}), torch {result['torch']}; memory: {result['memory']}",
        f"{'what':<52} {'s':>9} {'GiB':>7}  notes",
    ]

    def row(what: str, seconds: float | None = None, memory: float | None = None, note: str = "") -> None:
        s = f"{seconds:.3f}" if seconds is not None else "-"
        m = gib(memory) if memory is not None else "-"
        lines.append(f"{what:<52} {s:>9} {m:>7}  {note}")

    for name, section in result["sections"].items():
        if "error" in section:
            row(name, note=f"ERROR: {section['error']}")
        else:
            SECTION_ROWS[name](section, row)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- main
def default_fixtures() -> Path | None:
    value = os.environ.get("GMRW_FIXTURES")
    if value:
        return Path(value)
    beside = REPO.parent / "shared" / "fixtures" / "reference"  # where the Makefile looks
    return beside if beside.is_dir() else None


def run_sections(args, device: torch.device, sizes: Sizes, workdir: Path) -> dict:
    jobs = {
        "parity": lambda: parity_section(args.fixtures, device),
        "train": lambda: train_section(sizes, device, workdir, args.compile),
        "steps": lambda: steps_section(sizes, device, args.reference),
        "flow": lambda: flow_section(sizes, device),
        "eval": lambda: eval_section(sizes, device, workdir),
    }
    sections = {}
    for name in args.sections:
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            sections[name] = jobs[name]()
        except Exception as error:  # report it in the table and carry on with the other sections
            traceback.print_exc()
            sections[name] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    return sections


def finite_numbers(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--small", action="store_true", help="the small CPU-sized run (automatic without CUDA)"
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if visible)")
    parser.add_argument("--steps", type=int, help="training steps (default 30; small: 2)")
    parser.add_argument("--reference", help="checkout of ayshrv/gmrw for the reference's steps")
    parser.add_argument("--fixtures", type=Path, default=default_fixtures(), help="reference fixtures folder")
    parser.add_argument("--compile", action="store_true", help="train with model.compile=true")
    parser.add_argument("--sections", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is visible")
    small = args.small or device.type != "cuda"
    sizes = SMALL if small else FULL
    if args.steps is not None:
        if args.steps < 1:
            parser.error("--steps must be at least 1")
        sizes = Sizes(**{**asdict(sizes), "steps": args.steps})
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_")))
        os.environ.setdefault("GMRW_RUNS", str(workdir / "runs"))
        sections = run_sections(args, device, sizes, workdir)
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "small": small,
        "sizes": asdict(sizes),
        "memory": memory_kind(device),
        "sections": sections,
    }
    ok = all("error" not in s for s in sections.values()) and sections.get("parity", {}).get("passed", True)
    result["ok"] = bool(ok and finite_numbers(sections))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


def worker_main(argv: list[str]) -> None:
    """``gpu_check.py --worker step IMPL PRECISION ...``: one bare step measurement, JSON on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("impl", choices=("ours", "ref"))
    parser.add_argument("precision", choices=("fp32", "bf16"))
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--reference")
    args = parser.parse_args(argv)
    result = bare_step(
        args.impl, args.precision, args.size, args.repeats, torch.device(args.device), args.reference
    )
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:3] == ["--worker", "step"]:
        worker_main(sys.argv[3:])
    else:
        sys.exit(main())
