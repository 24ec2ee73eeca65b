"""One-line answers from the Hydra console scripts (``gmrw-train``, ``gmrw-eval``).

A bad command line or setting is printed as ``<prog>: <what is wrong and the fix>`` on stderr,
with exit status 1 and no traceback. Hydra reports its own composition errors (an unknown
``experiment=``, a misspelt key, an override it cannot parse) over several lines before our task
function runs; :func:`run_hydra` has Hydra raise them instead and prints each as one line.
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from typing import NoReturn

from hydra.errors import CompactHydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

#: Hydra's switch between its short report and raising the exception as it is.
FULL_ERROR_VARIABLE = "HYDRA_FULL_ERROR"


def run_hydra(hydra_main: Callable[[], None], prog: str) -> None:
    """Run a ``@hydra.main`` function on this process's command line, answering a command line
    Hydra cannot compose into a config in one line. ``HYDRA_FULL_ERROR=1`` set by the user keeps
    Hydra's own full report."""
    if os.environ.get(FULL_ERROR_VARIABLE) == "1":
        hydra_main()
        return
    os.environ[FULL_ERROR_VARIABLE] = "1"
    try:
        hydra_main()
    except CompactHydraException as error:
        raise SystemExit(f"{prog}: {hydra_error_line(error)}") from None
    finally:
        os.environ.pop(FULL_ERROR_VARIABLE, None)


def hydra_error_line(error: CompactHydraException) -> str:
    """Hydra's multi-line report of a command line it could not compose, as one line."""
    if isinstance(error, MissingConfigException) and error.options and "/" in str(error.missing_cfg_file):
        group, name = str(error.missing_cfg_file).rsplit("/", 1)
        return f"unknown {group}={name}; choose one of: {', '.join(error.options)}"
    cause = error.__cause__
    keys = getattr(getattr(cause, "parent_node", None), "keys", None)
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None) and callable(keys):
        # An override of a key the config does not have: most often a misspelling.
        full_key, key = str(cause.full_key), str(cause.key)
        near = difflib.get_close_matches(key, [str(k) for k in keys()], n=1)
        parent = full_key[: -len(key)]
        hint = f" (did you mean {parent}{near[0]}?)" if near else ""
        return f"{full_key} is not a setting{hint}; to add a new key, prefix the override with +"
    lines = [line.strip() for line in str(error).splitlines()]
    if "Config search path:" in lines:  # where Hydra looked: for Hydra's developers
        lines = lines[: lines.index("Config search path:")]
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).splitlines()[0])
    return "; ".join(line for line in lines if line)


def find_cause(error: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``error`` or the first exception of one of ``kinds`` it was raised from (``raise … from``:
    Hydra wraps what a ``_target_``'s constructor raises in its own InstantiationException)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


def fail(prog: str, message: str, logger: logging.Logger) -> NoReturn:
    """Exit with status 1 after one line ``<prog>: <message>`` on stderr; the run's log file (if
    Hydra made one) records it too, while the console shows it once."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in {*logging.getLogger().handlers, *logger.handlers}:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    raise SystemExit(f"{prog}: {message}")
