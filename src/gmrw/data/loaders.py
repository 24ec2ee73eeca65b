"""Loaders: training data as a pure function of the optimisation step, and evaluation sets
sharded over ranks without padding.

Lightning replays a half-finished epoch from its start when it resumes, and shards data with a
``DistributedSampler`` whose state it does not checkpoint. For an *exact* resume we want batch
``k`` of a resumed run to equal batch ``k`` of an uninterrupted one, on every rank. So training
reads one endless, deterministic stream of sample keys:

* stream position ``p`` (global over ranks) lies in pass ``p // n`` over a dataset of ``n`` items;
  each pass is a seeded permutation (or the identity without shuffling);
* rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` (no padding, no duplicates
  within a pass);
* when the loader is (re)created, the stream starts at the position the trainer's global step
  implies, so a resumed run continues exactly where the interrupted one stopped.

The sampler, and the loader around it (:class:`StepStreamLoader`), implement Lightning's
resumable-loader protocol (``state_dict`` / ``load_state_dict``): the checkpoint records the
stream's position and parameters, a resume continues from that position, and says so if the
stream changed meanwhile (a different seed, dataset length or world size maps positions to
other samples). Lightning then knows the loader resumes mid-epoch exactly, instead of warning
that it "is not resumable".

Each key is ``(index, sample_seed)``; datasets use the seed for their random crops, so the same
video seen in a later pass gets fresh crops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

SampleKey = tuple[int, int]

# Far more samples than any run consumes; the stream is endless in practice.
_STREAM_LENGTH = 2**40


def mix_seeds(*values: int) -> int:
    """A well-spread 63-bit seed from integers (stable across processes, unlike hash())."""
    return int(
        np.random.SeedSequence([int(v) % (2**63) for v in values]).generate_state(1, np.uint64)[0] >> 1
    )


def split_key(key: int | SampleKey, base_seed: int = 0) -> SampleKey:
    """A dataset key → ``(index, sample_seed)``; a bare index gets a seed derived from it."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    index = int(key)
    return index, base_seed * 1_000_003 + index


class StepStreamSampler(Sampler[SampleKey]):
    """An endless per-rank stream of ``(index, seed)`` keys that starts at ``start_fn()`` samples.

    Args:
        num_items: dataset length ``n``.
        seed: seeds the per-pass permutations and the per-sample seeds.
        shuffle: permute each pass.
        rank, world_size: this process's slice of the global stream.
        start_fn: number of samples *this rank* has already consumed, read each time an iterator
            is created (the datamodule passes ``global_step * batch_size``).
        length: samples per rank in the whole run (the trainer's ``max_steps`` × batch size), so
            that one "epoch" is the run and progress bars show its true length; endless if None.
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start_fn: Callable[[], int] | None = None,
        length: int | None = None,
    ):
        if num_items <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.start_fn = start_fn or (lambda: 0)
        self.length = length or _STREAM_LENGTH
        self._pass_cache: tuple[int, torch.Tensor] | None = None
        self._resume_at: int | None = None

    def __len__(self) -> int:
        return self.length

    def _permutation(self, pass_index: int) -> torch.Tensor:
        if self._pass_cache is None or self._pass_cache[0] != pass_index:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed * 7919 + pass_index)
                order = torch.randperm(self.num_items, generator=generator)
            else:
                order = torch.arange(self.num_items)
            self._pass_cache = (pass_index, order)
        return self._pass_cache[1]

    def key_at(self, position: int) -> SampleKey:
        """The key at global stream position ``position``."""
        pass_index, offset = divmod(position, self.num_items)
        index = int(self._permutation(pass_index)[offset])
        sample_seed = (self.seed * 1_000_003 + position) % (2**63 - 1)
        return index, sample_seed

    def __iter__(self) -> Iterator[SampleKey]:
        local = int(self.start_fn()) if self._resume_at is None else self._resume_at
        self._resume_at = None
        while local < self.length:
            yield self.key_at(local * self.world_size + self.rank)
            local += 1

    def _stream(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "world_size": self.world_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: ``position`` (samples this rank has consumed in finished
        steps) and the parameters that map positions to samples."""
        return {"position": int(self.start_fn()), **self._stream()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state["position"]`` when the next iterator starts.

        Positions are the same on every rank (samples per rank), so the state rank 0 saved
        serves all ranks. If the stream's parameters changed, the position no longer names the
        samples an uninterrupted run would read: that is said, and training goes on from it.
        """
        position = int(state["position"])
        changed = {k: (state.get(k), v) for k, v in self._stream().items() if state.get(k) != v}
        if changed:
            what = ", ".join(f"{k} {old} → {new}" for k, (old, new) in changed.items())
            log.warning(
                "the training stream changed since the checkpoint (%s): resuming at sample %d of "
                "each rank's stream, but not with the samples an uninterrupted run would have read",
                what,
                position,
            )
        else:
            log.info(
                "training data resumes exactly at sample %d of each rank's stream (samples are a "
                "function of the stream position)",
                position,
            )
        self._resume_at = position


class StepStreamLoader(DataLoader):
    """A ``DataLoader`` over a :class:`StepStreamSampler` that Lightning can checkpoint and resume
    (its ``state_dict`` / ``load_state_dict`` are the sampler's)."""

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def training_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle: bool = True,
    trainer=None,
    pin_memory: bool = False,
) -> StepStreamLoader:
    """A resumable training loader over a :class:`StepStreamSampler` bound to ``trainer``'s progress.

    Set ``use_distributed_sampler: false`` on the trainer (our trainer configs do): the sampler
    shards by rank itself.
    """
    rank, world_size = 0, 1
    if trainer is not None:
        rank, world_size = trainer.global_rank, trainer.world_size

    samples_per_step = batch_size * (trainer.accumulate_grad_batches if trainer is not None else 1)

    def samples_done() -> int:
        return 0 if trainer is None else trainer.global_step * samples_per_step

    length = None
    if trainer is not None and trainer.max_steps is not None and trainer.max_steps > 0:
        length = trainer.max_steps * samples_per_step
    sampler = StepStreamSampler(
        len(dataset),
        seed=seed,
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,
        start_fn=samples_done,
        length=length,
    )
    return StepStreamLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        drop_last=True,
    )


class RankStridedSampler(Sampler[int]):
    """Evaluation sharding without padding: rank ``r`` gets items ``r, r + W, ...``.

    Unlike ``DistributedSampler`` no item is repeated to even out ranks, so per-video metrics
    summed over ranks count every video exactly once.
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1):
        self.num_items, self.rank, self.world_size = num_items, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))


def tapvid_loader(dataset: Dataset, rank: int = 0, world_size: int = 1, num_workers: int = 0) -> DataLoader:
    """TAP-Vid examples at batch size 1; rank ``r`` of ``W`` gets videos r, r + W, … (no padding,
    no duplicates)."""
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=RankStridedSampler(len(dataset), rank, world_size),
        num_workers=num_workers,
        collate_fn=collate_tapvid,
    )


def collate_tapvid(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Default collation for tensors, ``name`` kept as a list of str."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
