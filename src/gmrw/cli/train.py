"""``gmrw-train``: compose the Hydra config and train (:func:`gmrw.training.run.train`); argument
parsing and the one-line messages and exit codes of the outcomes that are not a traceback.

Lightning's DDP re-runs this console script once per extra local rank and pins
``hydra.run.dir`` to rank 0's, so every rank shares one run directory. With ``-m`` each sweep
member runs through :func:`gmrw.training.sweep_member.run_member` (docs/cluster.md).
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gmrw.cli.errors import fail, find_cause, run_hydra
from gmrw.paths import config_dir

log = logging.getLogger("gmrw.train")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def compose_and_train(cfg: DictConfig) -> object:
    # Keep TensorFlow (Kubric reader) off GPUs and quiet, whatever the dataset.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        # A sweep member (`gmrw-train -m`) reports its failure to the sweep instead of exiting.
        from gmrw.training.sweep_member import run_member

        return run_member(cfg)
    from gmrw.checkpoint.write import CheckpointWriteError
    from gmrw.choices import ConfigError
    from gmrw.training.run import TrainingStopped, train

    try:
        train(cfg)
    except TrainingStopped as stop:
        log.warning("%s", stop)
        print(f"gmrw-train: {stop}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except Exception as error:
        # A setting a constructor refused comes wrapped in Hydra's InstantiationException.
        cause = find_cause(error, (ConfigError, CheckpointWriteError))
        if cause is None:
            raise
        fail("gmrw-train", str(cause), log)


def main() -> None:
    """The console script: Hydra's command line, every bad input answered in one line."""
    run_hydra(compose_and_train, "gmrw-train")


if __name__ == "__main__":
    main()
