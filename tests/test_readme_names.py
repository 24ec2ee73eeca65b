"""Every ``gmrw.…`` name the README mentions exists: a module, or an attribute of one."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = sorted(set(re.findall(r"(?<![/\w.])gmrw(?:\.[A-Za-z_]\w*)+", README.read_text())))


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name stands for (ImportError/AttributeError if none)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def test_the_readme_names_some_gmrw_objects():
    assert {"gmrw.Predictor", "gmrw.load_model", "gmrw.track"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_readme_name_resolves(name):
    assert resolve(name) is not None
