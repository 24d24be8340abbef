"""Data layer: multi-crop / evaluation transforms, datasets (Fashion-MNIST, image folders, CIFAR), subsets."""

from .cifar import LocalCIFAR10, LocalCIFAR100, write_cifar_like
from .datasets import (
    DATASET_NAMES,
    SPLITS,
    DatasetConfig,
    SelectedDataset,
    build_dataset,
    check_dataset,
    file_list_entries,
    parse_dataset_config,
)
from .fashion_mnist import FashionMNISTRGB, prepare_fashion_mnist
from .imagefolder import ImageFolderDataset, UnreadableImageError, file_list_entry_path
from .subsets import class_balanced_subset, read_file_list, write_file_list
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MultiCropTransform,
    ToRGB,
    eval_transform,
    train_classification_transform,
)

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
