"""benchmarks/gpu_check.py in its CPU mode, end to end: every section runs the code paths of the
GPU check at a small size, the parity checks pass, and the JSON holds finite numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from helpers import REPO


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def run_gpu_check(tmp_path, fixtures_dir, *args: str) -> subprocess.CompletedProcess:
    """benchmarks/gpu_check.py in a subprocess without CUDA (its CPU mode), as a user runs it."""
    env = {
        **os.environ,
        "GMRW_FIXTURES": str(fixtures_dir),
        "CUDA_VISIBLE_DEVICES": "",
        "WANDB_SILENT": "true",
    }
    script = str(REPO / "benchmarks" / "gpu_check.py")
    return subprocess.run(
        [sys.executable, script, "--json", str(tmp_path / "check.json"), "--workdir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )


@pytest.mark.slow  # the parity section in a subprocess: ~20 s on 2 busy cores
@pytest.mark.numerics
def test_gpu_check_parity_passes_on_this_cpu(tmp_path, fixtures_dir):
    """The parity section alone (what depends on the CPU's float kernels; ``make test-avx2`` runs it
    capped at AVX2): every check within its float32 bound or tolerance, exit status 0."""
    done = run_gpu_check(tmp_path, fixtures_dir, "--sections", "parity")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    parity = json.loads((tmp_path / "check.json").read_text())["sections"]["parity"]
    assert parity["passed"] is True and len(parity["checks"]) == 16
    assert all(r["passed"] and r["value"] <= r["tolerance"] for r in parity["checks"])


@pytest.mark.slow  # the five sections in a subprocess: ~30 s on 2 busy cores (minutes capped at AVX2: bf16)
def test_gpu_check_cpu_mode(tmp_path, fixtures_dir):
    out = tmp_path / "check.json"
    done = run_gpu_check(tmp_path, fixtures_dir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["ok"] is True and result["small"] is True and result["device"] == "cpu"
    sections = result["sections"]
    assert list(sections) == ["parity", "train", "steps", "flow", "eval"]
    assert not any("error" in s for s in sections.values()), sections

    parity = sections["parity"]
    assert parity["passed"] is True and len(parity["checks"]) == 16
    assert {r["against"] for r in parity["checks"]} == {"reference fixture"}  # the CPU is the device
    assert all(r["passed"] and r["value"] <= r["tolerance"] for r in parity["checks"])

    train = sections["train"]
    assert train["status"] == "finished" and train["steps"] == 2 and len(train["step_seconds"]) == 2
    assert train["crop"] == 64 and train["precision"] == "bf16-mixed" and train["compiled"] is False
    assert _finite(train["last_loss"]) and train["last_loss"] > 0
    assert all(_finite(train[k]) and train[k] > 0 for k in ("seconds_per_step", "wall_seconds_per_step"))
    assert train["peak_bytes"] > 0

    steps = sections["steps"]
    for name in ("ours-fp32", "ours-bf16"):
        assert _finite(steps[name]["loss"]) and steps[name]["seconds"] > 0 and steps[name]["peak_bytes"] > 0
    # bf16 autocast moves the loss a little, not a lot (same weights and inputs)
    assert steps["ours-bf16"]["loss"] == pytest.approx(steps["ours-fp32"]["loss"], rel=0.03)
    # no reference checkout was given: said so, no number
    assert steps["ref-fp32"] == {"unavailable": "no --reference checkout given"}

    flow = sections["flow"]
    assert set(flow) == {"weighted_sum", "argmax", "weighted_argmax@5"}
    for row in flow.values():
        assert row["input"] == 128 and row["finite"] is True and row["seconds"] > 0
        assert _finite(row["mean_abs_flow"]) and row["peak_bytes"] > 0

    ev = sections["eval"]
    assert ev["videos"] == 2 and ev["upsample_factor"] == 4 and ev["accelerator"] == "cpu"
    assert 0.0 <= ev["average_jaccard"] <= 1.0 and ev["seconds"] > 0

    table = done.stdout
    assert "parity: 16 checks" in table and "all passed" in table
    assert "unavailable: no --reference checkout given" in table
