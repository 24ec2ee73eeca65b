"""Benchmark GMRW's training step and flow memory against the paper's implementation.

    python benchmarks/bench_model.py --size 256 --reference /tmp/gmrw_ref
    python benchmarks/bench_model.py --size 128 --repeats 2        # quick, ours only
    python benchmarks/bench_model.py --size 256 --compile --configs ours-step-fp32 ours-step-bf16
                                                          # ours with torch.compile (vs a run without)

Every configuration runs in a fresh subprocess so its peak RSS (VmHWM) is its own;
"step peak" is the peak over the warm-up and timed steps minus the RSS just before the first
step (model, weights and inputs already in memory). FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on one more step, after the peak was read. Both implementations get the same weights (ours, seeded, loaded into theirs by
state dict, since the key names are identical) and the same inputs.

The reference is imported at run time from ``--reference`` (a checkout of ayshrv/gmrw, e.g.
``git -C <mirror> archive HEAD models utils | tar -x -C /tmp/gmrw_ref``); its optional
imports (flash_attn, wandb, dominate) are replaced by empty stub modules in that process.

``--compile`` compiles our network (:func:`gmrw.models.compile_network`) before the warm-up; the
warm-up's time, which includes compiling, is reported below the table. Compare with a run
without ``--compile`` in the same session (FLOPs are counted eagerly either way).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import types

from harness import peak_rss_bytes, rss_bytes, run_worker

CONFIGS = {
    "ours-step-fp32": "walk_loss + backward, fp32 (denormals flushed, as gmrw-train runs)",
    "ours-step-bf16": "walk_loss + backward, bf16 autocast (denormals flushed)",
    "ref-step-fp32": "reference forward + backward, fp32, as the reference runs",
    "ref-step-fp32-ftz": "reference forward + backward, fp32, denormals flushed like ours",
    "ref-step-bf16": "reference forward + backward, bf16 autocast, as the reference runs",
    "ours-flow": "flow of one pair at 2x size (denormals flushed)",
    "ref-flow": "reference flow of one pair at 2x size, as the reference runs",
}


def stub_reference_imports() -> None:
    """Empty modules for the reference's optional dependencies (never used by what we run)."""

    def flash_attn_qkvpacked_func(*args, **kwargs):
        raise RuntimeError("flash_attn is stubbed in this benchmark")

    stubs = {
        "flash_attn": {"flash_attn_qkvpacked_func": flash_attn_qkvpacked_func},
        "wandb": {},
        "dominate": {},
        "dominate.tags": {"__all__": []},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


def reference_model(path: str, weights, device: str = "cpu"):
    """The paper's GMRW with its fixture configuration, our weights loaded strictly, on ``device``."""
    import torch

    stub_reference_imports()
    sys.path.insert(0, path)
    from models.gmrw import GMRW as ReferenceGMRW  # noqa: PLC0415  (run-time import)

    args = argparse.Namespace(
        no_of_frames=2,
        temp=0,
        compute_flow_method="weighted_sum",
        window_threshold=5,
        device=torch.device(device),
        img2feature_downsample=4,
        smoothness_loss=True,
        smoothness_edge_constant=150.0,
        local_rank=-2,
    )
    model = ReferenceGMRW(
        args,
        num_scales=2,
        upsample_factor=8,
        feature_channels=128,
        attention_type="swin",
        num_transformer_layers=6,
        ffn_dim_expansion=4,
        num_head=1,
        norm=True,
    )
    model.load_state_dict(weights, strict=True)
    return model.to(device)


def inputs(size: int):
    """A clip (1,4,3,S,S) in [0,255] of smooth random images and a 0.85-scale crop affine."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 3, size // 8, size // 8, generator=g)
    frames = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)
    frames = (frames * 0.8 + 0.2 * torch.rand(4, 3, size, size, generator=g)) * 255
    affine = torch.tensor([[[0.85, 0.03, 0.08], [-0.03, 0.85, -0.05]]])
    return frames[None], affine


def worker(config: str, size: int, repeats: int, reference: str | None, compile: bool = False) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gmrw.losses import walk_loss
    from gmrw.models import GMRW

    if config.startswith("ours") or config.endswith("-ftz"):
        from gmrw.models import flush_denormals

        flush_denormals(True)
    torch.manual_seed(0)
    ours = GMRW()
    model = ours
    if config.startswith("ref"):
        model = reference_model(reference, ours.state_dict())
        del ours
    elif compile:
        from gmrw.models import compile_network

        compile_network(ours)
    frames, affine = inputs(size)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in config else contextlib.nullcontext
    )

    if "step" in config:
        model.train()

        def run():
            model.zero_grad(set_to_none=True)
            with autocast():
                if config.startswith("ref"):
                    loss = model(frames, affine, 0.5)[1]
                else:
                    loss = walk_loss(model, frames, affine, 0.5)["loss"]
            loss.backward()
            return loss.item()

    else:  # one consecutive-frame flow at 2x upsampling, resized back to the input size
        model.eval()
        big = torch.nn.functional.interpolate(
            frames[0, :2], scale_factor=2, mode="bilinear", align_corners=True
        )

        def run():
            with torch.no_grad():
                if config.startswith("ref"):
                    from utils import utils as ref_utils  # noqa: PLC0415

                    pairs = model.compute_correspondence_for_pairs(big[None, :1], big[None, 1:])
                    flow = ref_utils.compute_flow_from_affinity(
                        pairs[:, 0], H=size, W=size, weight_method="weighted_sum"
                    )
                else:
                    flow = model.flow(big[:1], big[1:], size=(size, size))
            return flow.abs().mean().item()

    baseline = rss_bytes()
    start = time.perf_counter()
    value = run()  # warm-up: first-call allocations count towards the peak, as in a real run
    first = time.perf_counter() - start  # with --compile: includes compiling
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = peak_rss_bytes()  # read before FLOP counting, whose dispatch layer holds extra tensors
    counter = FlopCounterMode(display=False)
    # a dispatch mode around compiled code would recompile it; the FLOPs are the eager model's
    with counter, torch.compiler.set_stance("force_eager"):
        run()
    return {
        "config": config,
        "size": size,
        "threads": torch.get_num_threads(),
        "value": value,
        "times": times,
        "time": statistics.median(times),
        "first_time": first,
        "compiled": bool(compile and not config.startswith("ref")),
        "gflop": counter.get_total_flops() / 1e9,
        "baseline_rss": baseline,
        "peak_rss": peak,
    }


def run_config(config: str, args) -> dict:
    worker_args = [config, "--size", str(args.size), "--repeats", str(args.repeats)]
    if args.reference:
        worker_args += ["--reference", args.reference]
    if args.compile:
        worker_args.append("--compile")
    return run_worker(__file__, worker_args, args.threads, config)


def table(results: dict[str, dict], size: int) -> str:
    mib = 1024**2
    ref_step = results.get("ref-step-fp32")
    ref_step_ftz = results.get("ref-step-fp32-ftz")
    ref_flow = results.get("ref-flow")
    lines = [
        f"GMRW benchmark: training step at {size}x{size} (batch 1, smoothness on), flow at "
        f"{2 * size}x{2 * size} input; {next(iter(results.values()))['threads']} threads",
        f"{'config':<16} {'time s':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'peak RSS MiB':>13} "
        f"{'step peak MiB':>14} {'speedup':>8} {'vs ftz':>7} {'mem ratio':>10}",
    ]
    for name, r in results.items():
        step_peak = r["peak_rss"] - r["baseline_rss"]
        base = ref_step if "step" in name else ref_flow
        speed = mem = speed_ftz = ""
        if base is not None:
            speed = f"{base['time'] / r['time']:.2f}x"
            mem = f"{step_peak / max(1, base['peak_rss'] - base['baseline_rss']):.3f}"
        if ref_step_ftz is not None and "step" in name:
            speed_ftz = f"{ref_step_ftz['time'] / r['time']:.2f}x"
        lines.append(
            f"{name:<16} {r['time']:>8.3f} {r['gflop']:>8.1f} {r['gflop'] / r['time']:>8.1f} "
            f"{r['peak_rss'] / mib:>13.0f} {step_peak / mib:>14.0f} {speed:>8} {speed_ftz:>7} {mem:>10}"
        )
    compiled = [f"{n} {r['first_time']:.1f} s" for n, r in results.items() if r.get("compiled")]
    if compiled:
        lines.append("torch.compile: first call (compiling included): " + ", ".join(compiled))
    if "ours-step-bf16" in results and "ours-step-fp32" in results:
        a, b = results["ours-step-bf16"]["value"], results["ours-step-fp32"]["value"]
        lines.append(f"loss fp32 {b:.5f}, bf16 autocast {a:.5f} ({100 * (a / b - 1):+.2f} %)")
    if ref_step is not None and "ours-step-fp32" in results:
        a, b = results["ours-step-fp32"]["value"], ref_step["value"]
        lines.append(f"loss ours {a:.5f}, reference {b:.5f} (same weights and inputs)")
    lines.append(
        "time: median of the timed repeats; speedup: vs the reference as it runs (fp32, or its flow); "
        "vs ftz: vs the reference with denormals flushed too; mem ratio: step peak / the reference's"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="training crop side (pixels)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after the warm-up")
    parser.add_argument("--reference", help="path to a checkout of the paper's repository")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the workers")
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), help="subset to run (default: all)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile our network (not the reference)"
    )
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.repeats, args.reference, args.compile)))
        return
    configs = args.configs or [c for c in CONFIGS if args.reference or not c.startswith("ref")]
    results = {c: run_config(c, args) for c in configs}
    print(table(results, args.size))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
