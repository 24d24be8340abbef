"""The crops of every pre-training step: data order, decoding and multi-crop augmentation.

Two pipelines give the same recipe (docs/METHOD_NOTES.md §2), chosen by the `crops.pipeline` key:

- `pil` (the reference, torchvision's PIL transforms): each image is augmented on its own in the data
  loader, seeded by (seed, epoch, index) (`SeededViews`);
- `batched`: the loader only decodes images to uint8 tensors; the whole batch is then augmented at
  once on the training device (`BatchedMultiCrop`), from uniform draws seeded by (seed, epoch,
  iteration) and made for the global batch, of which each process takes its own rows.

Either way a resumed run sees exactly the crops an uninterrupted run sees, and W processes together
see exactly what one process sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mokd.data.batched_multicrop import BatchedMultiCrop
from mokd.data.transforms import MultiCropTransform
from mokd.sampling import SeededViews, ShardedBatchSampler

PIPELINES = ("pil", "batched")


def to_uint8_tensor(image: Any) -> torch.Tensor:
    """A decoded image as a (3, H, W) uint8 tensor (grey and palette images become RGB)."""
    if isinstance(image, torch.Tensor):
        return image
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 tensor, got {type(image).__name__}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)


class DecodedImages(Dataset):
    """Item (index, epoch) -> (uint8 (3, H, W) image, label): decoding only, no augmentation."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[key[0]]
        return to_uint8_tensor(image), int(label)


def collate_images(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
    """One (B, 3, H, W) tensor when every image has the same size, else the list of images."""
    images = [img for img, _ in items]
    labels = torch.tensor([label for _, label in items])
    if all(img.shape == images[0].shape for img in images):
        return torch.stack(images), labels
    return images, labels


def batch_seed(seed: int, epoch: int, iteration: int) -> int:
    """Seed of one global batch's augmentation draws."""
    return hash((seed, epoch, iteration)) % 2**62


class TrainingCrops:
    """The crops of each step of a run, on the training device (see the module docstring)."""

    def __init__(
        self,
        dataset: Dataset,
        crops_cfg: dict[str, Any],
        seed: int,
        batch_size: int,
        num_workers: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.pipeline = crops_cfg.get("pipeline", "pil")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"config key 'crops.pipeline' must be one of {PIPELINES}, got {self.pipeline!r}")
        self.seed, self.batch_size, self.num_workers, self.device = seed, batch_size, num_workers, device
        self.sampler = ShardedBatchSampler(len(dataset), batch_size, seed, rank, world_size)  # type: ignore[arg-type]
        self.iters_per_epoch = len(dataset) // batch_size  # type: ignore[arg-type]
        self.rows = slice(rank * self.sampler.local_batch, (rank + 1) * self.sampler.local_batch)
        if self.pipeline == "pil":
            self.items: Dataset = SeededViews(dataset, MultiCropTransform.from_config(crops_cfg), seed)
            self.augment: BatchedMultiCrop | None = None
        else:
            self.items = DecodedImages(dataset)
            self.augment = BatchedMultiCrop.from_config(crops_cfg)

    def _loader(self, epoch: int, start_iter: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start_iter)
        workers = self.num_workers
        return DataLoader(
            self.items,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_images if self.augment is not None else None,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def epoch(self, epoch: int, start_iter: int = 0) -> Iterator[list[torch.Tensor]]:
        """The crops of iterations start_iter, start_iter + 1, ... of `epoch`, on the device."""
        for iteration, (batch, _) in enumerate(self._loader(epoch, start_iter), start=start_iter):
            if self.augment is None:
                yield [v.to(self.device, non_blocking=True) for v in batch]
                continue
            images = batch.to(self.device, non_blocking=True) if isinstance(batch, torch.Tensor) else [
                img.to(self.device, non_blocking=True) for img in batch
            ]
            generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, iteration))
            draws = self.augment.draws(generator, self.batch_size)[:, self.rows]
            yield self.augment(images, draws)

