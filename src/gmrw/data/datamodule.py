"""The part every training datamodule shares: a step-stream training loader and TAP-Vid validation.

Subclasses (synthetic, Kubric, Kinetics) only say how to build their training clips
(:meth:`ClipDataModule.build_train_set`) and, if not from a ``val`` config, their validation sets.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from gmrw.data.sampling import training_loader
from gmrw.data.tapvid import build_tapvid_dataset, tapvid_loader


class ClipDataModule(pl.LightningDataModule):
    """Training clips (docs/CONTRACTS.md, "Training batch") and optional TAP-Vid validation.

    Training reads :func:`gmrw.data.sampling.training_loader`'s step-indexed stream: exact resume,
    and each rank takes its own slice, so the trainer's ``use_distributed_sampler`` must be false
    (our trainer configs set it). Validation serves batch-size-1 TAP-Vid examples, sharded over
    ranks without padding, from one loader per named set (:attr:`val_set_names`; the module logs
    ``<name>/aj`` and so on for each).

    Args:
        batch_size, num_workers, pin_memory: of the training loader.
        seed: base seed of the sample stream.
        val: ``{format, path, query_mode, resolution, max_videos}`` of a TAP-Vid set, or None.
    """

    def __init__(
        self, batch_size: int, num_workers: int, seed: int, pin_memory: bool = False, val: dict | None = None
    ):
        super().__init__()
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.val_cfg = dict(val) if val is not None else None
        self.train_set: Dataset | None = None
        self.val_sets: dict[str, Dataset] | None = None

    def build_train_set(self) -> Dataset:
        raise NotImplementedError

    def build_val_sets(self) -> dict[str, Dataset]:
        """Validation sets by name (the metric prefix); here the ``val`` config's TAP-Vid set."""
        dataset = build_tapvid_dataset(self.val_cfg)
        return {} if dataset is None else {"val": dataset}

    @property
    def val_set_names(self) -> list[str]:
        """Names of the validation sets, in the order of :meth:`val_dataloader`'s loaders."""
        self.setup("validate")
        return list(self.val_sets)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self.build_train_set()
        if self.val_sets is None and stage in (None, "fit", "validate"):
            self.val_sets = self.build_val_sets()

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
        trainer = self.trainer_or_none()
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        for name, dataset in self.val_sets.items():
            if len(dataset) < world:
                # Lightning refuses a rank with an empty validation loader, and padding would
                # score a video twice.
                raise ValueError(
                    f"validation set {name!r} has {len(dataset)} video(s), fewer than the {world} "
                    "processes: give it at least one video per process"
                )
        return [tapvid_loader(dataset, rank, world, num_workers=0) for dataset in self.val_sets.values()]

    def trainer_or_none(self) -> pl.Trainer | None:
        """The attached trainer, or None when the datamodule is used on its own."""
        try:
            return self.trainer
        except RuntimeError:
            return None
