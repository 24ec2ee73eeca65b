"""Timing and peak memory on any device, the same way in every benchmark: synchronised, a warm-up
first, medians; CUDA's allocator peak on a GPU, the process's RSS high-water mark on the CPU."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from harness import peak_rss_bytes, reset_peak_rss


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def peak_bytes(device: torch.device) -> int:
    """Peak memory since :func:`reset_peak`: allocated tensors on CUDA, the process's RSS on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def memory_kind(device: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the process (VmHWM)"


def timed(run, repeats: int, device: torch.device):
    """``run()`` once as a warm-up (its result is returned), then ``repeats`` times, synchronised:
    (warm-up result, median seconds of the repeats)."""
    value = run()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return value, statistics.median(times)


def steady(times: list[float], skip: int = 3) -> float:
    """Median of ``times`` after the first ``skip`` (warm-up, autotuning), or of all if too few."""
    kept = times[skip:] if len(times) > skip else times
    return statistics.median(kept)


class StepTimer(pl.Callback):
    """Times each training step (batch start → batch end, device synchronised) and the wall time
    between step ends (data loading included); writes them and the peak memory to ``output``
    (JSON) when training ends. Add it to a composed config as
    ``cfg.callbacks = {"step_timer": {"_target_": "timing.StepTimer", "output": ...}}``."""

    def __init__(self, output: str):
        super().__init__()
        self.output = output
        self.step_seconds: list[float] = []
        self.wall_seconds: list[float] = []
        self._start = self._last_end = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        reset_peak(pl_module.device)
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        now = time.perf_counter()
        self.step_seconds.append(now - self._start)
        self.wall_seconds.append(now - self._last_end)
        self._last_end = now

    def on_train_end(self, trainer, pl_module) -> None:
        result = {
            "step_seconds": self.step_seconds,
            "wall_seconds": self.wall_seconds,
            "peak_bytes": peak_bytes(pl_module.device),
        }
        Path(self.output).write_text(json.dumps(result))
