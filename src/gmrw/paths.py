"""Where the packaged Hydra configs live, from any working directory."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """Absolute path of the ``configs/`` tree.

    An editable install (or a source checkout) reads ``<repo>/configs`` so edits take effect at
    once; a wheel carries a copy at ``gmrw/configs`` (see ``pyproject.toml``).
    """
    source_tree = _PACKAGE_DIR.parents[1] / "configs"
    if (source_tree / "train.yaml").is_file():
        return source_tree
    packaged = _PACKAGE_DIR / "configs"
    if (packaged / "train.yaml").is_file():
        return packaged
    raise FileNotFoundError(
        f"gmrw's configs were found neither at {source_tree} nor at {packaged}; reinstall the package"
    )
