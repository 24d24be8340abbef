"""Real small datasets written in CIFAR's file format, standing in for CIFAR-10/100 at the CPU scale.

CIFAR-10 stand-in: scikit-learn's handwritten digits (1797 8x8 images, 10 classes), upscaled to 32 px.
CIFAR-100 stand-in: those digits plus Fashion-MNIST's test images (20 classes), 32 px. Both go through
the same torchvision CIFAR loaders as the real files, so the transfer protocol's code is the one that
reads CIFAR at paper scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mokd.data.cifar import write_cifar_like
from mokd.data.fashion_mnist import FashionMNISTRGB, prepare_fashion_mnist


def _to_rgb32(images: np.ndarray, size: int = 32) -> np.ndarray:
    """(N, H, W) grey uint8 -> (N, size, size, 3) uint8, bicubic resize."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC).convert("RGB"))
    return out


def _split_per_class(labels: np.ndarray, n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < n_train + n_val:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than {n_train} + {n_val}")
        train.extend(idx[:n_train])
        val.extend(idx[n_train : n_train + n_val])
    return np.array(sorted(train)), np.array(sorted(val))


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, 8, 8) uint8 in 0..255 and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def fashion_test_images(fashion_root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prepare_fashion_mnist(fashion_root)
    ds = FashionMNISTRGB(str(fashion_root), train=False)
    return ds.data.numpy().astype(np.uint8), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)


def build_cifar_standins(
    root: Path, fashion_root: Path, per_class_train: int = 120, per_class_val: int = 30, seed: int = 0, size: int = 32
) -> None:
    """Write the CIFAR-10 and CIFAR-100 stand-ins under `root` (cifar-10-batches-py/, cifar-100-python/)."""
    if size != 32:
        raise ValueError("CIFAR's file format holds 32x32 images; `size` must be 32")
    d_img, d_lab = digits_images()
    f_img, f_lab, f_names = fashion_test_images(fashion_root)
    digit_names = [f"digit {i}" for i in range(10)]
    # CIFAR-10 stand-in: digits.
    tr, va = _split_per_class(d_lab, per_class_train, per_class_val, seed)
    d_rgb = _to_rgb32(d_img, size)
    write_cifar_like(root, "cifar10", d_rgb[tr], d_lab[tr], True, digit_names)
    write_cifar_like(root, "cifar10", d_rgb[va], d_lab[va], False, digit_names)
    # CIFAR-100 stand-in: digits (0-9) and Fashion-MNIST classes (10-19).
    ftr, fva = _split_per_class(f_lab, per_class_train, per_class_val, seed)
    f_rgb = _to_rgb32(f_img[np.concatenate([ftr, fva])], size)
    images_tr = np.concatenate([d_rgb[tr], f_rgb[: len(ftr)]])
    labels_tr = np.concatenate([d_lab[tr], f_lab[ftr] + 10])
    images_va = np.concatenate([d_rgb[va], f_rgb[len(ftr) :]])
    labels_va = np.concatenate([d_lab[va], f_lab[fva] + 10])
    names = digit_names + f_names
    write_cifar_like(root, "cifar100", images_tr, labels_tr, True, names)
    write_cifar_like(root, "cifar100", images_va, labels_va, False, names)
