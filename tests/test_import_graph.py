"""The package's import graph: no module imports itself through others, no private name crosses
a module boundary, and every import points down the layer order of ``docs/development.md``. Every
import counts, function-local ones too: a local import that dodges a circular import is still a
circle in the design."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gmrw"
# The one place the layer order is written; this test reads its "Layers" table.
LAYERS_DOC = PACKAGE.parents[1] / "docs" / "development.md"
# Rules beyond the floors (docs/development.md states them): (importer, what it must never reach,
# even through another package).
NEVER_REACHES = [("models", "losses"), ("data", "models"), ("metrics", "models")]
# Third-party packages that the plain-torch layers must not import.
NOT_PLAIN_TORCH = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf")


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


def layer_floors(doc: Path = LAYERS_DOC) -> dict[str, int]:
    """Top-level package or module of gmrw → its floor, from the doc's "Layers" table (rows
    ``| floor | `name`, `name` | job |``)."""
    text = doc.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    floors: dict[str, int] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([A-Za-z_]\w*)`", cells[1]):
                assert name not in floors, f"{name} is placed on two floors"
                floors[name] = int(cells[0])
    return floors


def top(module: str) -> str | None:
    """The top-level package (or module) of a gmrw module: gmrw.data.readers.tapvid → data; None for
    the face ``gmrw`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def top_level_names(root: Path = PACKAGE) -> set[str]:
    return {p.stem for p in root.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in root.iterdir() if (p / "__init__.py").is_file()
    }


def layer_violations(edges: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    """Every import from a package to one on its own floor or above (the face ``gmrw`` excepted)."""
    found = []
    for module, deps in sorted(edges.items()):
        source = top(module)
        if source is None:
            continue
        for dep in sorted(deps):
            target = top(dep)
            if target is None or target == source:
                continue
            if floors[target] >= floors[source]:
                found.append(f"{module} (floor {floors[source]}) imports {dep} (floor {floors[target]})")
    return found


def reaches(edges: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """A chain of imports from any module of package ``start`` into package ``target``, or None."""
    parent: dict[str, str | None] = {m: None for m in edges if top(m) == start}
    queue = list(parent)
    while queue:
        module = queue.pop(0)
        if top(module) == target:
            chain = [module]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            return chain[::-1]
        for dep in sorted(edges.get(module, ())):
            if dep not in parent:
                parent[dep] = module
                queue.append(dep)
    return None


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file, function-local ones too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_is_placed_on_a_floor():
    floors = layer_floors()
    assert set(floors) == top_level_names(), "docs/development.md's Layers table and src/gmrw/ disagree"


def test_imports_point_down_the_layer_order():
    edges, _ = import_graph()
    assert layer_violations(edges, layer_floors()) == []


@pytest.mark.parametrize(("importer", "target"), NEVER_REACHES)
def test_packages_that_never_reach_another(importer, target):
    edges, _ = import_graph()
    assert reaches(edges, importer, target) is None


@pytest.mark.parametrize("layer", ["models", "losses"])
def test_the_network_and_its_objective_stay_plain_torch(layer):
    """No Lightning, Hydra or OmegaConf in models/ and losses/: gmrw.load_model and gmrw.track
    work in a notebook without a trainer."""
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        assert not third_party_imports(path) & set(NOT_PLAIN_TORCH), path


def test_the_layer_checks_find_upward_imports_and_indirect_reaches(tmp_path):
    """The checker itself: an upward import, an import across one floor, and a forbidden package
    reached through another are each found; the face ``gmrw`` may import anything."""
    pkg = tmp_path / "gmrw"
    for name in ("models", "metrics", "data", "cli"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from gmrw.cli import main\n")
    (pkg / "choices.py").write_text("")
    (pkg / "models" / "net.py").write_text("def f():\n    from gmrw.data.clips import x\n")
    (pkg / "metrics" / "score.py").write_text("from gmrw.models import net\n")
    (pkg / "data" / "clips.py").write_text("from gmrw.metrics import score\nfrom gmrw import choices\n")
    (pkg / "cli" / "main.py").write_text("from gmrw.data.clips import x\n")
    doc = tmp_path / "development.md"
    doc.write_text(
        "# Dev\n\n## Layers\n\n| floor | packages | job |\n|---|---|---|\n"
        "| 0 | `choices` | base |\n| 1 | `models`, `metrics` | torch |\n| 2 | `data` | data |\n"
        "| 3 | `cli` | scripts |\n\n## Next\n\n| 9 | `ignored` | not in the section |\n"
    )
    floors = layer_floors(doc)
    assert floors == {"choices": 0, "models": 1, "metrics": 1, "data": 2, "cli": 3}
    assert top_level_names(pkg) == set(floors)
    edges, _ = import_graph(pkg)
    assert layer_violations(edges, floors) == [
        "gmrw.metrics.score (floor 1) imports gmrw.models.net (floor 1)",
        "gmrw.models.net (floor 1) imports gmrw.data.clips (floor 2)",
    ]
    assert reaches(edges, "data", "models") == ["gmrw.data.clips", "gmrw.metrics.score", "gmrw.models.net"]
    assert reaches(edges, "cli", "choices") == ["gmrw.cli.main", "gmrw.data.clips", "gmrw.choices"]
    assert reaches(edges, "choices", "data") is None
