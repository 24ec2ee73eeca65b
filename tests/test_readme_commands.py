"""The README is a front page and its commands, and those of the docs/ pages, match the code: every
``gmrw-train``/``gmrw-eval`` line composes with Hydra, every flag of ``gmrw-track``, ``gmrw-demo``,
``gmrw-data`` and the benchmark scripts exists, every ``make`` target exists, every relative link
and anchor resolves, and every docs page can be reached from the README. (The Python snippets and
``gmrw-track`` lines also run: test_readme_tracking.py.)"""

from __future__ import annotations

import re

import pytest

from doc_pages import DOCS, README, anchors, commands, links, page_id, pages, shell_lines
from helpers import REPO, compose_config

PAGES = pages()
MAX_README_LINES = 250
#: Pages other branches of this release add (conventions: tracking; cluster: W&B and sweeps;
#: precision: the learned precision step; footage: the real-footage benchmark). Until they are
#: merged a link to one is not checked; once merged it is, like any other.
PLACEHOLDER = re.compile(r"<[^<>]*>")


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    first_picture = next(i for i, line in enumerate(lines) if line.startswith("!["))
    first_python = next(i for i, line in enumerate(lines) if line.startswith("```python"))
    assert first_picture < 20 and first_python < 60, "a picture and a quick start near the top"


# --------------------------------------------------------------------------- Hydra commands


def hydra_overrides(args: list[str]) -> list[str] | None:
    """A documented command line's overrides as Hydra takes them: ``<run>``-style placeholders and
    a value elided as ``…`` become a plain word, a ``-m`` sweep's ``a,b`` its first value; None for
    a line that elides arguments (``…``)."""
    sweep = "-m" in args or "--multirun" in args
    overrides = []
    for arg in args:
        if arg in ("--cfg", "job", "-m", "--multirun"):
            continue
        if "…" in arg.split("=", 1)[0]:
            return None
        key, _, value = arg.partition("=")
        if sweep and "," in value and value[:1] not in "[{'\"":
            arg = f"{key}={value.split(',', 1)[0]}"  # a sweep: compose its first member
        overrides.append(PLACEHOLDER.sub("PLACEHOLDER", arg).replace("…", "ELIDED"))
    return overrides


def hydra_lines(program: str) -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for args in commands(page.read_text(), program):
            overrides = hydra_overrides(args)
            if overrides is not None:
                found.append((page_id(page), overrides))
    return found


TRAIN_LINES = hydra_lines("gmrw-train")
EVAL_LINES = hydra_lines("gmrw-eval")


def test_the_docs_hold_hydra_commands():
    assert len(TRAIN_LINES) >= 10 and len(EVAL_LINES) >= 5


@pytest.mark.parametrize(
    ("config", "page", "overrides"),
    [
        *[("train", page, overrides) for page, overrides in TRAIN_LINES],
        *[("eval", page, overrides) for page, overrides in EVAL_LINES],
    ],
)
def test_hydra_command_composes(config, page, overrides, tmp_path):
    # Hydra's compose rejects an unknown group option and, the configs being structured, a key
    # that names no value: what a user pasting the line would see fail.
    compose_config(config, overrides, tmp_path)


# ----------------------------------------------------------------------- argparse commands


def help_text(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def all_commands(program: str) -> list[tuple[str, list[str]]]:
    return [(page_id(page), args) for page in PAGES for args in commands(page.read_text(), program)]


@pytest.mark.parametrize("program", ["gmrw-track", "gmrw-demo"])
def test_console_script_flags_exist(program, capsys):
    from gmrw.cli.demo import main as demo
    from gmrw.cli.track import main as track

    text = help_text({"gmrw-track": track, "gmrw-demo": demo}[program], [], capsys)
    lines = all_commands(program)
    assert lines
    for page, args in lines:
        for flag in flags(args):
            assert re.search(rf"{flag}\b", text), f"{page}: {program} has no {flag}"


def test_gmrw_data_subcommands_and_flags_exist(capsys):
    from gmrw.cli.data import main as data

    lines = all_commands("gmrw-data")
    assert len(lines) >= 5
    for page, args in lines:
        text = help_text(data, args[:1], capsys)
        for flag in flags(args):
            assert re.search(rf"{flag}\b", text), f"{page}: gmrw-data {args[0]} has no {flag}"
        if args[0] == "download":
            assert re.search(rf"\b{args[1]}\b", text), f"{page}: gmrw-data download knows no {args[1]}"


def test_benchmark_scripts_and_flags_exist():
    found = 0
    for page in PAGES:
        for line in shell_lines(page.read_text()):
            script = re.search(r"python (benchmarks/\w+\.py)", line)
            if not script:
                continue
            path = REPO / script.group(1)
            assert path.is_file(), f"{page_id(page)}: no {script.group(1)}"
            # the script and the benchmarks/ helpers it imports (tracker_settings declares --checkpoint)
            helpers = re.findall(r"^from (\w+) import", path.read_text(), flags=re.M)
            source = "".join(
                p.read_text() for p in [path, *(path.parent / f"{h}.py" for h in helpers)] if p.is_file()
            )
            for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line.split("#")[0]):
                assert f'"{flag}"' in source, f"{page_id(page)}: {script.group(1)} has no {flag}"
            found += 1
    assert found >= 5


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    used = {
        match
        for page in PAGES
        for match in re.findall(r"`make ([\w-]+)", page.read_text())
        + [line.split()[1] for line in shell_lines(page.read_text()) if line.startswith("make ")]
    }
    assert {"setup", "train", "test"} <= used
    assert used <= targets, f"make targets the docs use but the Makefile lacks: {used - targets}"


# ----------------------------------------------------------------------------------- links

LINKS = [(page, target) for page in PAGES for target in links(page)]


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{page_id(p)}->{t}" for p, t in LINKS])
def test_link_resolves(page, target):
    file, _, anchor = target.partition("#")
    path = (page.parent / file).resolve() if file else page
    assert path.exists(), f"{page_id(page)} links to {target}, which does not exist"
    if anchor and path.suffix == ".md":
        assert anchor in anchors(path), f"{page_id(page)} links to {target}: no such heading"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen or not page.exists() or page.suffix != ".md":
            continue
        seen.add(page)
        todo += [(page.parent / target.partition("#")[0]).resolve() for target in links(page)]
    unreachable = {p.name for p in DOCS.glob("*.md")} - {p.name for p in seen}
    assert not unreachable, f"docs pages no link leads to from the README: {sorted(unreachable)}"
