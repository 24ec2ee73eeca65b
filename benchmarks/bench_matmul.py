"""What this machine's matmuls are worth, per dtype, at the shapes of a 256x256 GMRW training step.

    python benchmarks/bench_matmul.py                         # default threads
    taskset -c 0 python benchmarks/bench_matmul.py --threads 1

The rates bound what any change to the model's code can reach (docs/performance.md, "The floor"): a step of
~804 GFLOP cannot run faster than the best rate printed here allows. Each figure is the best of
``--repeats`` timed products after two warm-up ones; GFLOP/s = 2·m·k·n / seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

# (m, k, n): a square reference, then the step's FFN (in, out), score and q/k/v projection products
SHAPES = ((1024, 1024, 1024), (16384, 256, 1024), (16384, 1024, 128), (4096, 128, 4096), (16384, 128, 384))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def rate(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """GFLOP/s of ``a @ b``, best of ``repeats``."""
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rates here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"{torch.get_num_threads()} threads; GFLOP/s, best of {args.repeats}")
    print(f"{'m x k x n':>20} " + " ".join(f"{name:>7}" for name in DTYPES))
    results = []
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        row = {name: rate(a.to(dtype), b.to(dtype), args.repeats) for name, dtype in DTYPES.items()}
        results.append({"shape": [m, k, n], **row})
        print(f"{f'{m}x{k}x{n}':>20} " + " ".join(f"{row[name]:>7.0f}" for name in DTYPES), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "rates": results}, f, indent=1)


if __name__ == "__main__":
    main()
