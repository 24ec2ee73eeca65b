"""Every ``gmrw.…`` name the README and the docs/ pages mention exists: a module, or an attribute
of one."""

from __future__ import annotations

import importlib
import re

import pytest

from doc_pages import page_id, pages

NAME = re.compile(r"(?<![/\w.])gmrw(?:\.[A-Za-z_]\w*)+")
MENTIONS = sorted({(page_id(page), name) for page in pages() for name in NAME.findall(page.read_text())})


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


def test_the_docs_name_the_public_api():
    assert {"gmrw.Predictor", "gmrw.load_model", "gmrw.track"} <= {name for _, name in MENTIONS}


@pytest.mark.parametrize(("page", "name"), MENTIONS)
def test_name_resolves(page, name):
    assert resolve(name) is not None, f"{page} names {name}"
