"""Deterministic data order and augmentation, independent of workers, ranks and resume position.

Each epoch has one seeded permutation; global batch t is its slice [t*B, (t+1)*B), and rank r of W takes
the r-th of W equal parts of it. Each sample's augmentation is seeded by (seed, epoch, index). So a run
resumed mid-epoch sees exactly the batches an uninterrupted run sees, and W processes see together
exactly what one process sees.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of this rank's share of each global batch, from iteration `start_iter` of the epoch."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} processes")
        if n < global_batch:
            raise ValueError(f"the dataset has {n} images, fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.epoch = 0
        self.start_iter = 0

    def set_epoch(self, epoch: int, start_iter: int = 0) -> None:
        self.epoch, self.start_iter = epoch, start_iter

    def __len__(self) -> int:
        return self.n // self.global_batch - self.start_iter

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for t in range(self.start_iter, self.n // self.global_batch):
            batch = perm[t * self.global_batch : (t + 1) * self.global_batch]
            lo = self.rank * self.local_batch
            yield [(int(i), self.epoch) for i in batch[lo : lo + self.local_batch]]  # type: ignore[misc]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeededViews(Dataset):
    """Wraps a dataset of (image, label): item (index, epoch) -> (views, label), augmentation seeded per item."""

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any], seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:
        index, epoch = key
        image, label = self.dataset[index]
        state = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
        seed_everything(hash((self.seed, epoch, index)) % 2**62)
        try:
            views = self.transform(image)
        finally:
            torch.random.set_rng_state(state[0])
            random.setstate(state[1])
            np.random.set_state(state[2])
        return views, int(label)
