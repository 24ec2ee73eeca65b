"""gmrw-train's sweeper: Hydra's basic sweeper (the same ``a=1,2 b=x,y`` grid, any launcher) with

* each member in ``<sweep dir>/<its swept values>`` (``hydra.sweep.subdir``), a folder it finds
  again whenever it runs again, so a requeued or re-submitted member resumes there;
* a refusal, before anything runs, of members with several processes on the basic launcher;
* a report at the end instead of a stop at the first failure: every member runs, and the sweep
  exits with status 1 naming the members that failed.

The rules live in :mod:`gmrw.training.sweeps`; this module is the Hydra plugin around them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError, UncompletedJobError

from gmrw.training.sweeps import MemberOutcome, launcher_problem, member_name, sweep_report, swept_keys

log = logging.getLogger(__name__)


class GmrwSweeper(BasicSweeper):
    """Hydra's ``BasicSweeper`` for ``gmrw-train -m`` (see the module docstring)."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__(max_batch_size, params)
        self.swept: list[str] = []  # the keys the sweep varies, which name the member folders

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None
        launcher = OmegaConf.select(self.config, "hydra.launcher._target_")
        # Only what the check reads: the rest may need the run's own Hydra settings to resolve.
        trainer = {key: OmegaConf.select(self.config, f"trainer.{key}") for key in ("devices", "num_nodes")}
        problem = launcher_problem(trainer, launcher)
        if problem is not None:
            raise SystemExit(f"gmrw-train: {problem}")
        self.swept = swept_keys([*self._parse_config(), *arguments])
        try:
            returns = super().sweep(arguments)
        except (FailedJobError, UncompletedJobError) as error:
            # submitit stops waiting at the first job that ended without a result (killed, out of
            # memory, cancelled); the jobs already submitted go on in their own folders.
            first = str(error).strip().splitlines()[0]
            raise SystemExit(
                f"gmrw-train: a sweep member's job ended without a result: {first} (its log: "
                f"{self.config.hydra.sweep.dir}/.submitit); the other members keep running in "
                f"{self.config.hydra.sweep.dir}"
            ) from None
        outcomes = [r.return_value for batch in returns for r in batch]
        lines, failed = sweep_report([o for o in outcomes if isinstance(o, MemberOutcome)])
        if failed:
            raise SystemExit("gmrw-train: " + "\n".join(lines))
        for line in lines:
            log.info("%s", line)
        return returns

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        batch = super().get_job_batch()
        named = []
        for overrides in batch:
            name = member_name(overrides, self.swept)
            named.append([*overrides, f"hydra.sweep.subdir='{name}'"] if name else list(overrides))
        return named
