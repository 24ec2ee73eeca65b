"""The README and the pages under docs/ as the tests read them: sections, code blocks, command
lines, links and heading anchors."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from helpers import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"


def pages() -> list[Path]:
    """README.md and every docs/*.md."""
    return [README, *sorted(DOCS.glob("*.md"))]


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def section(path: Path, title: str) -> str:
    """The text of ``path`` from the level-2 heading that starts with ``title`` to the next one."""
    text = path.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``text``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def shell_lines(text: str) -> list[str]:
    """Every command line of the bash blocks of ``text``, with backslash continuations joined."""
    lines: list[str] = []
    for block in blocks(text, "bash"):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
    return lines


def commands(text: str, program: str) -> list[list[str]]:
    """The arguments of every ``program`` command in the bash blocks of ``text`` (comments removed;
    also after ``srun``/``time``/``exec``; ``make train ARGS="..."`` counts as ``gmrw-train ...``)."""
    found = []
    for line in shell_lines(text):
        if line.lstrip().startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if program == "gmrw-train" and words[:2] == ["make", "train"]:
            found.append([a for w in words[2:] if w.startswith("ARGS=") for a in shlex.split(w[5:])])
        elif program in words:
            found.append(words[words.index(program) + 1 :])
    return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    """Relative link targets of a page (web addresses left out), code blocks skipped."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a page: lower case, punctuation dropped, spaces
    as hyphens, a repeated heading numbered."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result
