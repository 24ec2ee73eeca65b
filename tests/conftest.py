"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference parity fixtures, from ``$GMRW_FIXTURES``; skips the test when absent."""
    value = os.environ.get("GMRW_FIXTURES")
    if not value:
        pytest.skip("GMRW_FIXTURES is not set: reference parity fixtures unavailable")
    path = Path(value)
    if not (path / "model.pt").is_file():
        pytest.skip(f"GMRW_FIXTURES={value} holds no reference fixtures")
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of tiny-model tests: faster for them, and immune to the
    scheduling waits a loaded machine adds to every parallel region (10× measured on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
