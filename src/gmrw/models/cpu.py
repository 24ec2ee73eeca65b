"""CPU floating-point mode for GMRW, and what this CPU's bfloat16 matmuls are worth.

Softmax over thousands of cells (the global matching) and the swin mask's exp(-100) produce
probabilities and gradients below 1.2e-38, float32's smallest normal number. x86 CPUs handle
such *denormal* operands in microcode: a matmul that meets them runs 70-100x slower (measured
here: a 16384x256 by 256x1024 linear took 9.3 s instead of 0.14 s). Flushing denormals to zero
removes that cliff; it only changes values that are already below 1e-38, so no loss, flow or
track moves measurably (the reference parity tests pass with it on). GPUs flush at full speed
and need nothing.
"""

from __future__ import annotations

import functools
import time

import torch


def flush_denormals(enabled: bool = True) -> bool:
    """Set the process-wide flush-denormals-to-zero mode of the CPU (torch.set_flush_denormal).

    gmrw's trainer, ``gmrw-eval`` and ``gmrw-track`` turn it on; call it yourself when you run
    the model on the CPU from a notebook. Returns False where the CPU does not support the mode.
    """
    return bool(torch.set_flush_denormal(enabled))


_PROBE_SIDE = 1024  # a 2-GFLOP product: long enough to time, ~20-40 ms per dtype on one core
BF16_ADVANTAGE = 1.5  # how much faster bf16 must be before a bf16 path with fp32 fix-ups pays


@functools.cache
def bf16_matmul_speedup() -> float:
    """How many times faster a large bfloat16 matmul runs than a float32 one on this CPU, timed once
    per process (best of 2 after a warm-up, at the current thread count).

    CPUs differ widely here. With AMX tiles bf16 is the fast path (this project's earlier AMX
    machine ran a whole bf16 training step 1.8x faster than fp32); on x86 cores with AVX-512 BF16
    but no AMX it can be *slower* (measured 0.5x on an Intel Xeon whose AMX is not exposed:
    oneDNN's bf16 kernel reached 63-84 GFLOP/s where MKL's fp32 one reached 124-148, one core).
    Paths that only pay off with a fast bf16 unit ask this first.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.rand(_PROBE_SIDE, _PROBE_SIDE, generator=g)
    b = torch.rand(_PROBE_SIDE, _PROBE_SIDE, generator=g)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y  # warm-up: kernel selection and first-touch allocations
        times = []
        for _ in range(2):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.autocast("cpu", enabled=False):
        return best(a, b) / best(a.bfloat16(), b.bfloat16())


def fast_bf16_matmul() -> bool:
    """True where :func:`bf16_matmul_speedup` is at least :data:`BF16_ADVANTAGE`."""
    return bf16_matmul_speedup() >= BF16_ADVANTAGE


def slow_bf16_warning(device_type: str, precision: str | int | None) -> str | None:
    """A warning for a run that asks for bfloat16 autocast on a CPU whose bf16 matmuls are not
    faster than float32 ones, else None. ``device_type``: where the run computes ("cpu", "cuda",
    ...); ``precision``: as the Trainer resolved it ("bf16-mixed", "32-true", ...).

    On such CPUs (x86 without AMX) bf16-mixed runs the whole model slower than 32-true (measured
    on an AVX-512 BF16 Xeon: a 256x256 training step 5.6 s against 3.7 s on two threads), which is
    the opposite of what people choose it for. Times the probe only when both apply.
    """
    if device_type != "cpu" or not str(precision).startswith("bf16"):
        return None
    speedup = bf16_matmul_speedup()
    if speedup >= 1.0:
        return None
    return (
        f"trainer.precision={precision} on this CPU: its bfloat16 matmuls run at {speedup:.2f}x the "
        "speed of float32 ones (a 2-GFLOP probe), so this run will be slower than with "
        "trainer.precision=32-true, not faster. bf16 pays on GPUs and on CPUs with AMX."
    )
