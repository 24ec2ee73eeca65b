"""What the benchmarks share: each configuration in a fresh worker process, and its memory readings
(Linux ``/proc``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    """The process's resident memory now (VmRSS)."""
    return _status("VmRSS")


def peak_rss_bytes() -> int:
    """The process's RSS high-water mark (VmHWM), which :func:`reset_peak_rss` can reset."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_worker(script: str, worker_args: list[str], threads: int | None, label: str) -> dict:
    """Run ``script --worker ...`` in a fresh process (so its peak memory is its own) and return the
    JSON dict it prints last; ``threads`` sets OMP_NUM_THREADS for it."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    print(f"running {label} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, script, "--worker", *worker_args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
