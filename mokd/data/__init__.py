"""Data layer: multi-crop / evaluation transforms, datasets (Fashion-MNIST, image folders, CIFAR), subsets."""

from __future__ import annotations

import importlib
from typing import Any

# Each name is imported from its module on first use (PEP 562), so that `from mokd.data import X`
# costs only X's module: `mokd.data.cifar` and `mokd.data.fashion_mnist` import torchvision (and with
# it torchvision.models), which a command that needs neither should not pay for at start-up.
_SOURCES: dict[str, tuple[str, ...]] = {
    "cifar": ("LocalCIFAR10", "LocalCIFAR100", "write_cifar_like"),
    "datasets": (
        "DATASET_NAMES", "SPLITS", "DatasetConfig", "SelectedDataset", "build_dataset", "check_dataset",
        "file_list_entries", "parse_dataset_config",
    ),
    "fashion_mnist": ("FashionMNISTRGB", "prepare_fashion_mnist"),
    "imagefolder": ("ImageFolderDataset", "UnreadableImageError", "file_list_entry_path"),
    "normalization": ("IMAGENET_MEAN", "IMAGENET_STD"),
    "subsets": ("class_balanced_subset", "read_file_list", "write_file_list"),
    "transforms": ("MultiCropTransform", "ToRGB", "eval_transform", "train_classification_transform"),
}
_MODULE_OF: dict[str, str] = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = [
    "DATASET_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "DatasetConfig",
    "FashionMNISTRGB",
    "ImageFolderDataset",
    "LocalCIFAR10",
    "LocalCIFAR100",
    "MultiCropTransform",
    "SelectedDataset",
    "ToRGB",
    "UnreadableImageError",
    "build_dataset",
    "check_dataset",
    "class_balanced_subset",
    "eval_transform",
    "file_list_entries",
    "file_list_entry_path",
    "parse_dataset_config",
    "prepare_fashion_mnist",
    "read_file_list",
    "train_classification_transform",
    "write_cifar_like",
    "write_file_list",
]
