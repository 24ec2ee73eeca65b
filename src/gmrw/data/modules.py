"""The two LightningDataModules; every dataset reaches them from config.

* :class:`ClipDataModule`: training clips (docs/CONTRACTS.md, "Training batch") from whatever
  dataset ``train_set`` builds (``configs/data/{synthetic,kubric,kinetics}.yaml`` give it a Hydra
  ``_partial_`` node), and TAP-Vid validation sets by name.
* :class:`TapVidDataModule`: one TAP-Vid benchmark for ``gmrw-eval``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from gmrw.data.loaders import tapvid_loader, training_loader
from gmrw.data.tapvid import TapVidDataset

log = logging.getLogger(__name__)

DatasetFactory = Callable[[], Dataset]
#: TAP-Vid formats that ``gmrw-data download <format> DIR`` fetches to ``DIR/<format>/<format>.pkl``.
DOWNLOADABLE_TAPVID = ("tapvid_davis", "tapvid_rgb_stacking")


@rank_zero_only
def _say_validation_is_off(why: str, how: str) -> None:
    log.warning("TAP-Vid validation is off: %s. To turn it on: %s.", why, how)


def _validation_off_hint(val: Mapping[str, Any]) -> tuple[str, str]:
    """(why, how to turn it on) for a ``data.val`` whose file is not there."""
    fmt = val.get("format")
    why = f"no {fmt} data at {val['path']} (data.val.path)"
    if fmt in DOWNLOADABLE_TAPVID:
        return why, f"`gmrw-data download {fmt} DIR`, then add paths.data_root=DIR (or data.val.path=FILE)"
    return why, "point data.val.path at a copy"


def _rank_and_world(trainer: pl.Trainer | None) -> tuple[int, int]:
    return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)


class ClipDataModule(pl.LightningDataModule):
    """Training clips and TAP-Vid validation sets.

    Training reads :func:`gmrw.data.loaders.training_loader`'s step-indexed stream: exact resume,
    and each rank takes its own slice, so the trainer's ``use_distributed_sampler`` must be false
    (our trainer configs set it). Validation serves batch-size-1 TAP-Vid examples, sharded over
    ranks without padding, one loader per named set (:attr:`val_set_names`; the module logs
    ``<name>/aj`` and so on for each). Datasets are built in :meth:`setup`, on each rank.

    Args:
        train_set: builds the training dataset (a Hydra ``_partial_`` node, or any callable).
        root: where a real dataset lives; its config hands it to ``train_set`` (``${..root}``), so
            that ``data.root=DIR`` is all a command line needs.
        batch_size, num_workers, pin_memory: of the training loader.
        seed: base seed of the sample stream.
        val_sets: name → builder of a validation set (TAP-Vid examples); None entries are left out.
        val: ``{format, path, query_mode, resolution, max_videos, ...}``: a TAP-Vid benchmark
            (:class:`~gmrw.data.tapvid.TapVidDataset` arguments) validated on as ``val``.
        val_optional: when ``val``'s path does not exist, train without it (saying so in one line
            at start-up, with how to turn it on) instead of failing. The real-data configs validate
            on TAP-Vid-DAVIS where ``gmrw-data download`` puts it, if it is there.

    A run with no validation set at all says so at start-up, in one line.
    """

    def __init__(
        self,
        train_set: DatasetFactory,
        root: str | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        val_sets: Mapping[str, DatasetFactory | None] | None = None,
        val: Mapping[str, Any] | None = None,
        val_optional: bool = False,
    ):
        super().__init__()
        self.train_factory = train_set
        self.root = root
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.val_factories = {name: make for name, make in dict(val_sets or {}).items() if make is not None}
        if val is not None:
            if val.get("path") in (None, "", "???"):
                raise ValueError(f"the TAP-Vid validation set data.val needs a path; got {dict(val)}")
            if val_optional and not Path(str(val["path"])).exists():
                _say_validation_is_off(*_validation_off_hint(val))
            else:
                self.val_factories["val"] = lambda: TapVidDataset(**val)
        elif not self.val_factories:
            _say_validation_is_off(
                "data.val is null", "data.val='{format: tapvid_davis, path: FILE}' (any TAP-Vid format)"
            )
        self.train_set: Dataset | None = None
        self.val_sets: dict[str, Dataset] | None = None

    @property
    def val_set_names(self) -> list[str]:
        """Names of the validation sets, in the order of :meth:`val_dataloader`'s loaders."""
        return list(self.val_factories)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self.train_factory()
        if self.val_sets is None and stage in (None, "fit", "validate"):
            self.val_sets = {name: make() for name, make in self.val_factories.items()}

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return training_loader(
            self.train_set,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            seed=self.seed,
            shuffle=True,
            trainer=self.trainer_or_none(),
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> list[DataLoader]:
        self.setup("validate")
        rank, world = _rank_and_world(self.trainer_or_none())
        for name, dataset in self.val_sets.items():
            if len(dataset) < world:
                # Lightning refuses a rank with an empty validation loader, and padding would
                # score a video twice.
                raise ValueError(
                    f"validation set {name!r} has {len(dataset)} video(s), fewer than the {world} "
                    "processes: give it at least one video per process"
                )
        return [tapvid_loader(dataset, rank, world, num_workers=0) for dataset in self.val_sets.values()]

    def skipped_files(self) -> list[str]:
        """Training files found unreadable so far by this rank and its loader workers (datasets
        that skip broken files say which: ``skipped_files()``)."""
        skipped = getattr(self.train_set, "skipped_files", None)
        return list(skipped()) if callable(skipped) else []

    def teardown(self, stage: str) -> None:
        """At the end of fit (a run is one epoch of the step stream), name every file skipped by
        any of this rank's loader workers."""
        if stage != "fit" or not callable(getattr(self.train_set, "skipped_files", None)):
            return
        rank, _ = _rank_and_world(self.trainer_or_none())
        files = self.skipped_files()
        if files:
            log.warning(
                "rank %d: %d unreadable video(s) skipped in this run: %s", rank, len(files), ", ".join(files)
            )
        else:
            log.info("rank %d: no unreadable videos met in this run", rank)

    def trainer_or_none(self) -> pl.Trainer | None:
        """The attached trainer, or None when the datamodule is used on its own."""
        try:
            return self.trainer
        except RuntimeError:
            return None


class TapVidDataModule(pl.LightningDataModule):
    """Serves one TAP-Vid benchmark for evaluation (``val``/``test``/``predict`` loaders).

    ``dataset``: the :class:`~gmrw.data.tapvid.TapVidDataset` arguments (``format``, ``path``,
    ``query_mode``, ``resolution``, ``max_videos``, ...), as ``configs/data/tapvid_*.yaml`` list
    them. Batches have batch size 1 and are sharded over ranks without padding (rank r of W gets
    videos r, r + W, …), so run the Trainer with ``use_distributed_sampler=False``: Lightning's
    ``DistributedSampler`` would pad the last ranks with repeated videos.
    """

    def __init__(self, num_workers: int = 0, **dataset: Any):
        super().__init__()
        self.save_hyperparameters()
        self.dataset_args = dataset
        self.num_workers = int(num_workers)
        self.dataset: TapVidDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = TapVidDataset(**self.dataset_args)

    def _loader(self) -> DataLoader:
        self.setup()
        rank, world = _rank_and_world(self.trainer)
        return tapvid_loader(self.dataset, rank, world, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()
