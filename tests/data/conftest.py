"""Fixtures for the data-layer tests: small real image folders written to tmp dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("n01440764", "n01443537", "n01484850")
PER_CLASS = 4


def write_image(path: Path, seed: int, size: tuple[int, int] = (20, 16)) -> None:
    """Write a small random RGB JPEG."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="JPEG")


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """``root/{train,val}/<wnid>/<wnid>_<i>.JPEG`` with 3 classes x 4 images per split."""
    root = tmp_path / "imagenet"
    seed = 0
    for split in ("train", "val"):
        for cls in CLASSES:
            for i in range(PER_CLASS):
                write_image(root / split / cls / f"{cls}_{i}.JPEG", seed)
                seed += 1
    return root


@pytest.fixture
def classes() -> tuple[str, ...]:
    """Class folder names of ``image_root``, in sorted order."""
    return CLASSES


@pytest.fixture
def per_class() -> int:
    """Images per class and split in ``image_root``."""
    return PER_CLASS
