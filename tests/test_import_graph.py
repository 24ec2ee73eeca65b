"""The package's import graph: no module imports itself through others, and no private name crosses
a module boundary. Every import counts, function-local ones too: a local import that dodges a
circular import is still a circle in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gmrw"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """(module → the gmrw modules it imports anywhere in its body, private names imported across
    modules). ``from gmrw.x import y`` counts as importing ``gmrw.x.y`` when that is a module."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    if f"{base}.{alias.name}" in paths:
                        deps.add(f"{base}.{alias.name}")
                    else:
                        deps.add(base)
                        if alias.name.startswith("_") and not alias.name.startswith("__") and base in paths:
                            private.append(f"{name} imports {alias.name} from {base}")
        # A package's __init__ re-exports its children: a child importing an ancestor package's
        # face, or a face importing its own children, is not a cycle of the design.
        edges[name] = {
            d
            for d in deps
            if d in paths and d != name and not name.startswith(d + ".") and not d.startswith(name + ".")
        }
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_gmrw():
    edges, _ = import_graph()
    assert len(edges) > 50, "the walk found too few modules: is PACKAGE right?"
    assert cycles(edges) == []


def test_no_private_name_crosses_a_module():
    _, private = import_graph()
    assert private == []


def test_the_walk_sees_function_local_imports_and_cycles(tmp_path):
    """The checker itself: a cycle closed by a function-local import, and a private import, are found."""
    pkg = tmp_path / "gmrw"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("from gmrw.data.b import thing\n")
    (pkg / "data" / "b.py").write_text("def thing():\n    from gmrw.data import c\n")
    (pkg / "data" / "c.py").write_text("from gmrw.data.a import _helper\n")
    edges, private = import_graph(pkg)
    assert cycles(edges) == [["gmrw.data.a", "gmrw.data.b", "gmrw.data.c"]]
    assert private == ["gmrw.data.c imports _helper from gmrw.data.a"]


@pytest.mark.parametrize("layer", ["gmrw.models", "gmrw.losses"])
def test_the_network_and_its_objective_stay_plain_torch(layer):
    """models and losses import no Lightning, Hydra, data, tracking or training code, and the
    network knows nothing of its loss."""
    edges, _ = import_graph()
    forbidden = (
        "gmrw.data",
        "gmrw.tracking",
        "gmrw.training",
        "gmrw.evaluation",
        "gmrw.cli",
        "gmrw.callbacks",
    )
    if layer == "gmrw.models":
        forbidden += ("gmrw.losses",)
    for module, deps in edges.items():
        if module == layer or module.startswith(layer + "."):
            assert not [d for d in deps if d.startswith(forbidden)], module
            source = (
                (PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text()
                if not (PACKAGE.parent / module.replace(".", "/")).is_dir()
                else ""
            )
            assert "pytorch_lightning" not in source and "hydra" not in source, module
