"""benchmarks/bench_loaders.py: the workers-per-GPU arithmetic, and a tiny run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from helpers import REPO

SCRIPT = REPO / "benchmarks" / "bench_loaders.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_loaders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_per_gpu_is_batch_times_sample_time_over_step_time():
    workers_needed = _bench().workers_needed
    assert workers_needed(10.0, 0.2, 1) == 1  # the GPU takes 5 clips/s, one worker gives 10
    assert workers_needed(5.0, 0.2, 1) == 1  # exactly enough
    assert workers_needed(2.6, 0.1, 1) == 4  # it takes 10 clips/s, a worker gives 2.6
    assert workers_needed(5.0, 0.1, 2) == 4  # batch 2 per GPU: 20 clips/s


@pytest.mark.slow  # a subprocess writing and reading tiny mp4s: ~20 s on 2 busy cores
def test_tiny_run_reports_per_worker_and_loader_rates(tmp_path):
    out = tmp_path / "loaders.json"
    args = ["--work-dir", str(tmp_path), "--resolutions", "64x48", "--videos", "2", "--seconds", "1"]
    args += ["--fps", "10", "--frame-gap", "2", "--clips", "3", "--img-size1", "64", "--img-size2", "48"]
    args += ["--skip-kubric", "--loader-workers", "1", "--step-time", "0.5", "--json", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "pinned to" in report["conditions"] and report["step_time"] == 0.5
    (row,) = report["results"]
    for key in ("decode_clips_per_s", "full_clips_per_s", "loader_clips_per_s"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["workers_needed"] == math.ceil(1 / (0.5 * row["full_clips_per_s"]))
    assert "workers per GPU = ceil(batch x (1 / clips per s per worker) / GPU step time)" in done.stdout
