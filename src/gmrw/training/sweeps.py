"""Sweeps (``gmrw-train -m``): what a member is called, how many processes it may start, and
how the sweep reports its members. Light on purpose (no torch, no Lightning): gmrw-train's Hydra
sweeper (``hydra_plugins.gmrw_sweeper``) imports it whenever Hydra starts.

* A member's run directory is ``<sweep dir>/<its swept values>``, e.g.
  ``runs/synthetic/multirun/lr_sweep/model.optimizer.lr=0.0002``: the same whenever the member
  runs again (a requeued SLURM job, the sweep submitted again with the same ``hydra.sweep.dir``
  or ``GMRW_RUN_NAME``), so it resumes from its own newest intact checkpoint.
* A member that fails is reported, not raised: the other members run on, and the sweep ends
  with an exit status of 1 and one line per failed member.
* A member with several processes (``trainer.devices`` × ``trainer.num_nodes`` > 1) needs a
  launcher that starts one process per device (``submitit_local`` or ``slurm``): Lightning's own
  way of starting them re-runs the command line, which would start the whole sweep again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser

from gmrw.paths import slurm_batch_job

#: Hydra's launcher that runs the members one after the other inside this process.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
#: Longest member folder name kept readable; longer ones are cut and end with a hash of the whole.
MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True)
class MemberOutcome:
    """What a sweep member's job returns to the sweep: its number, folder, and the one-line
    error when it failed (None when it finished)."""

    number: int
    run_dir: str
    overrides: tuple[str, ...] = ()
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def describe(self) -> str:
        return f"#{self.number} {self.run_dir}: {self.error or 'finished'}"


def swept_keys(arguments: Iterable[str]) -> list[str]:
    """The keys a sweep varies (``model.optimizer.lr=1e-4,2e-4`` → ``model.optimizer.lr``), in order."""
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def member_name(overrides: Sequence[str], keys: Sequence[str]) -> str | None:
    """The folder name of the member with these ``overrides``: its values of the swept ``keys``
    (``model.optimizer.lr=0.0002,seed=1``); None when the sweep varies nothing."""
    if not keys:
        return None
    values = {
        o.key_or_group: o.get_value_element_as_str()
        for o in OverridesParser.create().parse_overrides(list(overrides))
    }
    name = ",".join(f"{key}={values[key]}" for key in keys if key in values)
    name = _UNSAFE.sub("_", name).lstrip(".") or "member"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 11]}-{digest}"
    return name


def world_size(trainer: Mapping) -> int | None:
    """Processes a trainer config asks for (``devices`` × ``num_nodes``); None when ``devices`` is
    not a number (``auto``, a list of ids: Lightning decides)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        return None
    return devices * int(nodes)


def _tasks_started_for_it(env: Mapping[str, str]) -> int | None:
    """How many processes the job runs this command in, when something other than Lightning
    started them: submitit_local's tasks, or SLURM's (a batch job's ``--ntasks``)."""
    if env.get("SUBMITIT_EXECUTOR") == "local" and env.get("SUBMITIT_LOCAL_NTASKS"):
        return int(env["SUBMITIT_LOCAL_NTASKS"])
    if slurm_batch_job(env) and env.get("SLURM_NTASKS"):
        return int(env["SLURM_NTASKS"])
    return None


def member_processes_problem(trainer: Mapping, environ: Mapping[str, str] | None = None) -> str | None:
    """Why a sweep member cannot start the processes its trainer asks for, or None.

    Each of a member's processes must be a task its launcher started (submitit_local's
    ``tasks_per_node``, SLURM's ``--ntasks``), one per device: without them Lightning would start
    the other ranks by re-running the whole ``gmrw-train -m`` command line, sweep and all."""
    env = os.environ if environ is None else environ
    size = world_size(trainer)
    if size is None:
        return None
    tasks = _tasks_started_for_it(env)
    if tasks is None:
        if size <= 1:
            return None
        return (
            f"a sweep member with {size} processes (trainer.devices x trainer.num_nodes) needs a launcher "
            "that starts one process per device: add hydra/launcher=submitit_local (this machine) or "
            "hydra/launcher=slurm, or run the members one at a time without -m"
        )
    if tasks != size:
        return (
            f"the member's job has {tasks} task(s) but trainer.devices x trainer.num_nodes is {size}: "
            "hydra.launcher.tasks_per_node x hydra.launcher.nodes must match (hydra/launcher=slurm and "
            "submitit_local follow trainer.devices and trainer.num_nodes unless overridden)"
        )
    return None


def launcher_problem(
    trainer: Mapping, launcher_target: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The sweep-wide version of :func:`member_processes_problem`, checked before anything is
    launched: the basic launcher runs every member inside this very process."""
    if launcher_target != BASIC_LAUNCHER:
        return None
    return member_processes_problem(trainer, environ)


def sweep_report(outcomes: Sequence[MemberOutcome]) -> tuple[list[str], bool]:
    """Lines that sum a sweep up (failed members first), and whether any member failed."""
    failed = [o for o in outcomes if o.failed]
    if not failed:
        return [f"sweep: all {len(outcomes)} members finished"], False
    lines = [f"{len(failed)} of {len(outcomes)} sweep members failed:"]
    lines += [f"  {o.describe()}" for o in failed]
    finished = [o for o in outcomes if not o.failed]
    if finished:
        lines.append(f"  finished: {', '.join(f'#{o.number}' for o in finished)}")
    return lines, True
