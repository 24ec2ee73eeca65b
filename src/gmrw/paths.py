"""Where the packaged Hydra configs live, from any working directory, how a config is composed as the
console scripts compose it, and how training runs are named."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parent
RUN_NAME_RESOLVER = "gmrw_run_name"
# Lightning's rule for "SLURM manages this process" (SLURMEnvironment.detect): an interactive
# allocation's shell is not a batch job, and runs started from it keep timestamped names.
_INTERACTIVE_SLURM_JOB_NAMES = ("bash", "interactive")

# configs/hydra/launcher/submitit_local.yaml is the launcher plugin's config of that name with
# gmrw's settings (a task per device, no one-hour limit). Hydra merges it onto the plugin's schema,
# as intended, and warns about the shared name at every composition: in gmrw-train's process and
# in every sweep member's job, which imports this module (the config's resolvers) before composing.
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/submitit_local' is validated against ConfigStore schema"
)


def slurm_batch_job(environ: Mapping[str, str] | None = None) -> bool:
    """Whether SLURM manages this process: a batch job or job step, not the shell of an
    interactive allocation (Lightning's ``SLURMEnvironment.detect`` rule)."""
    env = os.environ if environ is None else environ
    return bool(env.get("SLURM_JOB_ID") or env.get("SLURM_NTASKS")) and (
        env.get("SLURM_JOB_NAME") not in _INTERACTIVE_SLURM_JOB_NAMES
    )


def run_name(environ: Mapping[str, str] | None = None, now: datetime | None = None) -> str:
    """The last component of a training run directory (``runs/<task>/<name>``).

    * ``$GMRW_RUN_NAME`` when set: give every rank of a torchrun job, or every restart of one
      run, the same directory;
    * in a SLURM batch job, ``slurm-<job id>`` (``slurm-<array job>_<task>`` for an array task):
      a requeued job keeps its id, so it comes back to its own directory and resumes there;
    * otherwise the start time, to the microsecond, so two runs never share a directory.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("GMRW_RUN_NAME", "").strip()
    if explicit:
        if not re.fullmatch(r"[A-Za-z0-9._=+-]+", explicit) or explicit in (".", ".."):
            raise ValueError(
                f"GMRW_RUN_NAME={explicit!r} must be one folder name (letters, digits, . _ = + -)"
            )
        return explicit
    job_id = env.get("SLURM_JOB_ID")
    if job_id and slurm_batch_job(env):
        array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        if array_job and array_task:
            return f"slurm-{array_job}_{array_task}"
        return f"slurm-{job_id}"
    return (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S_%f")


def register_config_resolvers() -> None:
    """Make ``${gmrw_run_name:}`` available to the configs (idempotent)."""
    if not OmegaConf.has_resolver(RUN_NAME_RESOLVER):
        # Cached, like Hydra's ${now:}: the run directory is read more than once (Lightning's DDP
        # relaunch reads it back to pin the other ranks to it) and must not move.
        OmegaConf.register_new_resolver(RUN_NAME_RESOLVER, run_name, use_cache=True)


def config_dir() -> Path:
    """Absolute path of the ``configs/`` tree.

    An editable install (or a source checkout) reads ``<repo>/configs`` so edits take effect at
    once; a wheel carries a copy at ``gmrw/configs`` (see ``pyproject.toml``). Whoever asks for
    the configs is about to compose them, so the resolvers they use are registered here.
    """
    register_config_resolvers()
    source_tree = _PACKAGE_DIR.parents[1] / "configs"
    if (source_tree / "train.yaml").is_file():
        return source_tree
    packaged = _PACKAGE_DIR / "configs"
    if (packaged / "train.yaml").is_file():
        return packaged
    raise FileNotFoundError(
        f"gmrw's configs were found neither at {source_tree} nor at {packaged}; reinstall the package"
    )


def compose_config(config_name: str, overrides: list[str], output_dir: str | os.PathLike | None = None):
    """The composed ``config_name`` config (``train``, ``eval``) for command-line style ``overrides``,
    as ``gmrw-train`` / ``gmrw-eval`` would compose it, without their argument parsing: for a notebook
    (``gmrw.training.run.train(compose_config("train", [...], "runs/mine"))``), tests and benchmarks.

    With ``output_dir`` the run directory is set there, as Hydra's launcher would set it (Hydra's
    own node is then dropped, as a real run's task function never sees it); without, the config
    keeps its ``hydra`` node and nothing is registered.
    """
    # Hydra is imported here so that the run-name resolver above stays cheap to import.
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        # The composed hydra node is read-only; this stands in for the launcher that sets it.
        with read_write(cfg), open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    return cfg
