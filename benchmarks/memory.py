"""Process memory readings shared by the benchmarks (Linux ``/proc``)."""

from __future__ import annotations


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
