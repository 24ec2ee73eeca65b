"""The CPU probe that decides whether bf16 matmul paths are worth taking."""

from __future__ import annotations

import math

from gmrw.models import cpu


def test_bf16_speedup_is_measured_once_and_decides_fast_bf16(monkeypatch):
    cpu.bf16_matmul_speedup.cache_clear()
    first = cpu.bf16_matmul_speedup()
    assert math.isfinite(first) and first > 0
    assert cpu.bf16_matmul_speedup() == first  # cached: one probe per process
    assert cpu.fast_bf16_matmul() == (first >= cpu.BF16_ADVANTAGE)
    monkeypatch.setattr(cpu, "bf16_matmul_speedup", lambda: cpu.BF16_ADVANTAGE * 0.99)
    assert not cpu.fast_bf16_matmul()
    monkeypatch.setattr(cpu, "bf16_matmul_speedup", lambda: cpu.BF16_ADVANTAGE)
    assert cpu.fast_bf16_matmul()


def test_slow_bf16_warning_names_the_measured_speed(monkeypatch):
    monkeypatch.setattr(cpu, "bf16_matmul_speedup", lambda: 0.53)
    message = cpu.slow_bf16_warning("cpu", "bf16-mixed")
    assert message is not None and "0.53x" in message and "32-true" in message
    # nothing to say for float32, for GPUs, or where bf16 is at least as fast
    assert cpu.slow_bf16_warning("cpu", "32-true") is None
    assert cpu.slow_bf16_warning("cuda", "bf16-mixed") is None
    monkeypatch.setattr(cpu, "bf16_matmul_speedup", lambda: 1.8)
    assert cpu.slow_bf16_warning("cpu", "bf16-mixed") is None
