"""Batches for the trainer: each step's batch is a pure function of ``(seed, step)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from rnon_engine.train.config import TrainConfig
from rnon_engine.train.data import (
    CropSchedule,
    ImageFolderDataset,
    InpaintingDataset,
    SampleKey,
    TrainBatchSampler,
    source_weights,
)

__all__ = ["BatchSource", "TrainBatches", "FixedBatches", "make_sources", "collate"]


def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into the trainer's batch.

    Keys: ``image``, ``valid`` (1 = known input), ``target_valid`` (1 = may be a target).
    """
    return {
        "image": torch.stack([s["image"] for s in samples]).float(),
        "valid": torch.stack([s["mask"] for s in samples]).float(),
        "target_valid": torch.stack([s["valid_target"] for s in samples]).float(),
    }


class BatchSource:
    """Something the trainer asks for ``batch(step)``; ``batch_size`` is the global batch."""

    batch_size: int

    def batch(self, step: int) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        """Return the batch of ``step``."""
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class _StepSampler(Sampler[list[SampleKey]]):
    """Yields this rank's share of each global batch from ``start`` on."""

    def __init__(self, inner: TrainBatchSampler, start: int, rank: int, world: int) -> None:
        self.inner, self.start, self.rank, self.world = inner, start, rank, world

    def __iter__(self):  # noqa: ANN204
        step = self.start
        while True:
            yield self.inner.batch(step)[self.rank :: self.world]
            step += 1


class TrainBatches(BatchSource):
    """Random training batches: balanced sources, seeded crops, flips and masks.

    With ``num_workers > 0`` a DataLoader prefetches the following steps; asking for a
    step out of order restarts it there. Under DDP every rank takes every ``world``-th
    sample of the same global batch.
    """

    def __init__(
        self,
        dataset: InpaintingDataset,
        batch_size: int,
        schedule: CropSchedule,
        *,
        seed: int,
        balance: bool = True,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if batch_size % world:
            from rnon_engine.errors import ConfigError

            raise ConfigError(f"batch_size {batch_size} must be divisible by the {world} processes")
        self.dataset = dataset
        self.batch_size = batch_size
        weights = source_weights(dataset) if balance else None
        self.sampler = TrainBatchSampler(len(dataset), batch_size, schedule, weights, seed=seed)
        self.rank, self.world, self.num_workers = rank, world, num_workers
        self._it = None
        self._next = -1

    def keys(self, step: int) -> list[SampleKey]:
        """This rank's sample keys at ``step``."""
        return self.sampler.batch(step)[self.rank :: self.world]

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of ``step`` (this rank's share)."""
        if self.num_workers == 0:
            return collate([self.dataset[k] for k in self.keys(step)])
        if self._it is None or step != self._next:
            loader = DataLoader(
                self.dataset,
                batch_sampler=_StepSampler(self.sampler, step, self.rank, self.world),
                num_workers=self.num_workers,
                collate_fn=collate,
                persistent_workers=False,
                prefetch_factor=2,
            )
            self._it = iter(loader)
        self._next = step + 1
        return next(self._it)

    def __len__(self) -> int:
        return len(self.dataset)


class FixedBatches(BatchSource):
    """The same validation batches every time: fixed crops (no jitter, no flips) and masks."""

    def __init__(
        self,
        dataset: InpaintingDataset,
        batch_size: int,
        crop_size: int,
        max_samples: int,
        seed: int,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        n = min(max_samples, max(len(dataset), 1) * 4)
        rng = np.random.default_rng([seed, 0x76616C])
        idx = np.arange(n) % len(dataset)
        seeds = rng.integers(0, 2**63 - 1, n, dtype=np.int64)
        self.keys = [SampleKey(int(i), int(s), crop_size) for i, s in zip(idx, seeds, strict=True)]

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Validation batch number ``step``."""
        keys = self.keys[step * self.batch_size : (step + 1) * self.batch_size]
        return collate([self.dataset[k] for k in keys])

    def __len__(self) -> int:
        return -(-len(self.keys) // self.batch_size)


def make_sources(
    config: TrainConfig,
    batch_size: int,
    data: str | Path,
    val: str | Path | None = None,
    *,
    dist_info: Any = None,
    exclude_dir: str | Path | None = None,
    exclude_value: float | None = None,
    val_samples: int = 64,
) -> tuple[TrainBatches, FixedBatches | None]:
    """Training and (optional) validation batch sources from image folders.

    ``exclude_dir`` (masks mirroring ``data``, nonzero = bad) and ``exclude_value`` (raw
    pixel value of bad pixels) mark training pixels that are never input nor target.
    """
    dc = config.data
    rank = getattr(dist_info, "rank", 0)
    world = getattr(dist_info, "world", 1)
    images = ImageFolderDataset(
        data,
        crop_size=dc.crop_size,
        scale_jitter=dc.scale_jitter,
        hflip=dc.flips,
        exclude_dir=exclude_dir,
        exclude_value=exclude_value,
        seed=config.seed,
        cache_size=256,
    )
    schedule = CropSchedule({0: dc.crop_size, **dict(dc.crop_schedule)})
    train = TrainBatches(
        InpaintingDataset(images, dc.mask_ratio, dc.fine_damage, dc.fine_ratio),
        batch_size,
        schedule,
        seed=config.seed,
        balance=dc.balance_sources,
        num_workers=dc.num_workers,
        rank=rank,
        world=world,
    )
    fixed = None
    if val is not None:
        vimages = ImageFolderDataset(
            val, crop_size=dc.crop_size, scale_jitter=None, hflip=False, seed=config.seed
        )
        fixed = FixedBatches(
            InpaintingDataset(vimages, dc.mask_ratio),
            batch_size,
            dc.crop_size,
            val_samples,
            config.seed,
        )
    return train, fixed
