"""Behaviour of the multi-crop and classification transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mokd.data import (
    MultiCropTransform,
    eval_transform,
    train_classification_transform,
)
from mokd.data.transforms import blur_kernel_size


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8))


def test_multicrop_returns_globals_then_locals(photo: Image.Image) -> None:
    torch.manual_seed(0)
    t = MultiCropTransform(global_size=64, local_size=32, n_local=3)
    crops = t(photo)
    assert len(crops) == 5 == t.n_crops
    assert [tuple(c.shape) for c in crops] == [(3, 64, 64)] * 2 + [(3, 32, 32)] * 3
    assert all(c.dtype == torch.float32 for c in crops)
    assert not torch.equal(crops[0], crops[1])


def test_multicrop_paper_defaults(photo: Image.Image) -> None:
    t = MultiCropTransform.from_config({})
    crops = t(photo)
    assert len(crops) == 10
    assert tuple(crops[0].shape) == (3, 224, 224) and tuple(crops[-1].shape) == (3, 96, 96)
    # normalised with ImageNet statistics: values leave [0, 1]
    assert crops[0].min() < 0


def test_multicrop_accepts_grey_images_and_no_locals() -> None:
    grey = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 251, mode="L")
    crops = MultiCropTransform(global_size=32, local_size=16, n_local=0, jitter=False)(grey)
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2


def test_from_config_reads_keys_and_rejects_unknown() -> None:
    t = MultiCropTransform.from_config(
        {"global_size": 32, "local_size": 16, "n_local": 2, "global_scale": [0.3, 1.0], "mean": [0.5] * 3}
    )
    assert (t.global_size, t.local_size, t.n_local, t.global_scale) == (32, 16, 2, (0.3, 1.0))
    assert t.std == pytest.approx((0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="n_locals"):
        MultiCropTransform.from_config({"n_locals": 4})


def test_blur_kernel_is_odd_and_at_least_three() -> None:
    for size in (8, 16, 32, 96, 224):
        k = blur_kernel_size(size, 0.1)
        assert k % 2 == 1 and k >= 3
    assert blur_kernel_size(224, 0.1) in (21, 23)


def test_only_global_two_solarises() -> None:
    t = MultiCropTransform(global_size=32, local_size=16, n_local=1)
    names = [[type(op).__name__ for op in v.transforms] for v in (t.global1, t.global2, t.local)]
    assert ["RandomSolarize" in n for n in names] == [False, True, False]


def test_eval_transform_resizes_then_centre_crops(photo: Image.Image) -> None:
    x = eval_transform(32)(photo)
    assert tuple(x.shape) == (3, 32, 32)
    assert torch.equal(x, eval_transform(32)(photo))  # deterministic


def test_train_classification_transform_shape(photo: Image.Image) -> None:
    x = train_classification_transform(48, mean=(0.5,) * 3, std=(0.5,) * 3)(photo)
    assert tuple(x.shape) == (3, 48, 48) and x.dtype == torch.float32
