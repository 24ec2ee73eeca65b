"""One member of a ``gmrw-train -m`` sweep: train it, and return how it went instead of raising,
so that a failing member does not stop the others (:mod:`gmrw.training.sweeps`)."""

from __future__ import annotations

import logging
import os

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from submitit.helpers import TorchDistributedEnvironment

from gmrw.checkpoint.write import CheckpointWriteError
from gmrw.choices import ConfigError
from gmrw.training.run import TrainingStopped, train
from gmrw.training.sweeps import MemberOutcome, member_processes_problem

log = logging.getLogger("gmrw.train")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _label_wandb_run(cfg: DictConfig, sweep_name: str, member_name: str) -> None:
    """Members of one sweep share a W&B group (the sweep's folder name) unless
    ``logger.wandb.group`` says otherwise, and each is named by its folder."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    if not wandb:
        return
    with open_dict(wandb):
        if wandb.get("group") is None:
            wandb.group = sweep_name
        wandb.name = f"{wandb.get('name') or cfg.get('task_name')}/{member_name}"


def run_member(cfg: DictConfig) -> MemberOutcome:
    """Train the sweep member ``cfg`` describes, in this process (one of its job's tasks).

    A member stopped by SIGTERM / SIGUSR1 (preempted, requeued) exits with the signal's status and
    returns nothing, as a plain run does: a requeued job's launcher then waits for its next start.
    Any other failure is logged (with its traceback when it is not a one-line error) and returned
    as the member's one-line ``error``.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = str(hydra_cfg.runtime.output_dir)
    outcome = {
        "number": int(hydra_cfg.job.num),
        "run_dir": run_dir,
        "overrides": tuple(hydra_cfg.overrides.task),
    }
    problem = member_processes_problem(cfg.trainer)
    if problem is not None:
        log.error("%s", problem)
        return MemberOutcome(**outcome, error=problem)
    if os.environ.get("SUBMITIT_EXECUTOR") == "local" and int(os.environ.get("SUBMITIT_LOCAL_NTASKS", 1)) > 1:
        # submitit_local started one task per device: tell Lightning (RANK, LOCAL_RANK, WORLD_SIZE,
        # MASTER_ADDR/PORT) so that it uses them instead of starting processes of its own.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    _label_wandb_run(cfg, os.path.basename(os.path.dirname(run_dir)), os.path.basename(run_dir))
    try:
        train(cfg)
    except TrainingStopped as stop:
        log.warning("%s", stop)
        raise SystemExit(stop.exit_code) from None
    except (ConfigError, CheckpointWriteError) as error:
        log.error("%s", error)
        return MemberOutcome(**outcome, error=_one_line(error))
    except Exception as error:  # a member's bug must not stop the sweep; its log has the traceback
        log.exception("sweep member failed")
        return MemberOutcome(
            **outcome, error=f"{type(error).__name__}: {_one_line(error)} (traceback in {run_dir})"
        )
    return MemberOutcome(**outcome)
