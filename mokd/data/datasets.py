"""Dataset factory: one config dict -> a labelled ``Dataset`` of (image or transformed image, int label).

Config keys (mokd/schemas/dataset.yaml; anything else raises ConfigError, a ValueError):
  name          "fashion_mnist" | "imagefolder" | "cifar10" | "cifar100" | "coco" (a COCO-format
                instance set: checked here, read by the detection protocol, mokd/data/coco.py)
  root          dataset root (imagefolder: ``root/train``, ``root/val``; CIFAR: the folder holding
                ``cifar-10-batches-py`` / ``cifar-100-python``; Fashion-MNIST: ``root/FashionMNIST/raw``)
  class_list    optional text file, one class name per line: keep those classes, relabelled 0..C-1
                in file order (ImageNet-100). For CIFAR / Fashion-MNIST the names are the dataset's
                class names.
  file_list     optional text file selecting samples of the *train* split (or a dict
                ``{"train": path, "val": path}``). Imagefolder lines: ``class/filename`` or SimCLR-style
                ``n01440764_10026.JPEG``; CIFAR / Fashion-MNIST lines: integer sample indices.
  on_bad_image  "error" (default) | "skip" (imagefolder only)
  skip_per_class optional int >= 0 (default 0): drop the first N samples of every class, in the
                split's order (after file_list and class_list), before max_per_class applies; with
                ``skip_per_class: S, max_per_class: M`` a class keeps its samples S .. S+M-1 (0-based,
                counted within that class), so subsets with different ranges never share an image
                (a held-out probe split beside the first-N subsets of the tables)
  max_per_class optional int: the first N samples of every class (small deterministic subsets)
  train, val    coco only: the split folders' names (default train2017, val2017)
Splits are "train" and "val" (Fashion-MNIST / CIFAR: "val" is the test set).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .cifar import (
    CIFAR_SPECS,
    LocalCIFAR10,
    LocalCIFAR100,
    cifar_files,
    cifar_missing_message,
    write_cifar_like,
)
from .fashion_mnist import (
    DEBIAN_SOURCE_DIR,
    INSTALL_HINT,
    FashionMNISTRGB,
    missing_raw_files,
    prepare_fashion_mnist,
)
from .imagefolder import (
    FlatImageFolderError,
    ImageFolderDataset,
    file_list_entry_path,
    flat_layout_error,
    list_class_dirs,
)
from .subsets import class_balanced_subset, read_file_list, write_file_list

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "DatasetConfig",
    "SelectedDataset",
    "build_dataset",
    "check_dataset",
    "class_balanced_subset",
    "file_list_entries",
    "parse_dataset_config",
    "prepare_fashion_mnist",
    "read_file_list",
    "write_cifar_like",
    "write_file_list",
]

DATASET_NAMES: tuple[str, ...] = ("fashion_mnist", "imagefolder", "cifar10", "cifar100", "coco")
COCO_ONLY_KEYS: tuple[str, ...] = ("train", "val")
SPLITS: tuple[str, ...] = ("train", "val")

Transform = Callable[[Any], Any] | None


@dataclass(frozen=True)
class DatasetConfig:
    """Validated dataset config (see the module docstring)."""

    name: str
    root: Path
    class_list: Path | None = None
    file_lists: dict[str, Path] = field(default_factory=dict)
    on_bad_image: str = "error"
    max_per_class: int | None = None
    skip_per_class: int = 0
    coco_splits: dict[str, str] = field(default_factory=lambda: {"train": "train2017", "val": "val2017"})

    def file_list(self, split: str) -> Path | None:
        """The file list applying to ``split``, if any."""
        return self.file_lists.get(split)


def _plain(value: Any) -> Any:
    """Paths as strings (a caller may pass ``Path`` objects), so the config validates as JSON data."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def parse_dataset_config(cfg: Mapping[str, Any]) -> DatasetConfig:
    """Check a config dict against mokd/schemas/dataset.yaml; unknown keys and bad values raise
    ConfigError (a ValueError) naming the key."""
    from mokd.config import ConfigError, validate  # jsonschema only where a dataset is built

    cfg = validate(_plain(cfg), "dataset", label="dataset config key")
    name = cfg["name"]
    if name != "coco" and any(k in cfg for k in COCO_ONLY_KEYS):
        key = next(k for k in COCO_ONLY_KEYS if k in cfg)
        raise ConfigError(f"dataset config key {key!r}: the split folder names are for COCO sets (name: coco) only",
                          key=key)
    on_bad = cfg.get("on_bad_image") or "error"
    mpc = cfg.get("max_per_class")
    fl = cfg.get("file_list")
    if fl is None:
        file_lists: dict[str, Path] = {}
    elif isinstance(fl, Mapping):
        file_lists = {k: Path(v) for k, v in fl.items() if v is not None}
    else:
        file_lists = {"train": Path(fl)}
    cl = cfg.get("class_list")
    return DatasetConfig(
        name=name,
        root=Path(cfg["root"]),
        class_list=Path(cl) if cl is not None else None,
        file_lists=file_lists,
        on_bad_image=on_bad,
        max_per_class=mpc,
        skip_per_class=cfg.get("skip_per_class") or 0,
        coco_splits={"train": cfg.get("train", "train2017"), "val": cfg.get("val", "val2017")},
    )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


class SelectedDataset(Dataset):
    """A subset of an array-backed dataset, relabelled; ``source_indices`` index the full split."""

    def __init__(
        self, base: Dataset, source_indices: Sequence[int], label_map: Mapping[int, int], classes: list[str]
    ):
        self.base = base
        self.source_indices = list(source_indices)
        self.label_map = dict(label_map)
        self.classes = classes
        base_targets = base.targets  # type: ignore[attr-defined]
        self.targets: list[int] = [self.label_map[int(base_targets[i])] for i in self.source_indices]

    def __len__(self) -> int:
        return len(self.source_indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, _ = self.base[self.source_indices[index]]
        return img, self.targets[index]


def _select(base: Dataset, cfg: DatasetConfig, split: str) -> Dataset:
    """Apply file_list (indices), class_list, skip_per_class and max_per_class to an array-backed dataset."""
    fl = cfg.file_list(split)
    if cfg.class_list is None and fl is None and cfg.max_per_class is None and not cfg.skip_per_class:
        return base
    targets: list[int] = base.targets  # type: ignore[attr-defined]
    base_classes: list[str] = list(base.classes)  # type: ignore[attr-defined]
    n = len(targets)

    if fl is None:
        indices = list(range(n))
    else:
        indices = []
        for entry in read_file_list(fl):
            try:
                i = int(entry)
            except ValueError:
                raise ValueError(
                    f"{fl}: entry {entry!r} is not an integer sample index ({cfg.name})"
                ) from None
            if not 0 <= i < n:
                raise ValueError(f"{fl}: index {i} out of range for {n} {split} samples of {cfg.name}")
            indices.append(i)

    if cfg.class_list is None:
        classes = base_classes
        label_map = {i: i for i in range(len(classes))}
    else:
        classes = read_file_list(cfg.class_list)
        unknown = [c for c in classes if c not in base_classes]
        if unknown:
            raise ValueError(f"{cfg.class_list}: class {unknown[0]!r} is not a {cfg.name} class")
        label_map = {base_classes.index(c): new for new, c in enumerate(classes)}
        indices = [i for i in indices if targets[i] in label_map]

    kept = per_class_range([targets[i] for i in indices], cfg.skip_per_class, cfg.max_per_class, indices)
    if indices and not kept:
        raise ValueError(
            f"skip_per_class {cfg.skip_per_class} leaves no {split} sample of {cfg.name} (the largest class has "
            f"{max(Counter(targets[i] for i in indices).values())})"
        )
    return SelectedDataset(base, kept, label_map, classes)


def per_class_range(
    labels: Sequence[Any], skip: int, limit: int | None, items: Sequence[Any] | None = None
) -> list[Any]:
    """The items whose rank within their class (by ``labels``, in order) lies in [skip, skip + limit).

    ``items`` defaults to the positions ``0..len(labels)-1``; ``limit`` None keeps every rank from ``skip`` on.
    """
    items = list(range(len(labels))) if items is None else list(items)
    if skip < 0:
        raise ValueError(f"skip_per_class must be >= 0, got {skip}")
    seen: dict[Any, int] = {}
    kept = []
    for item, y in zip(items, labels, strict=True):
        rank = seen.get(y, 0)
        seen[y] = rank + 1
        if rank >= skip and (limit is None or rank < skip + limit):
            kept.append(item)
    return kept


def build_dataset(cfg: Mapping[str, Any], split: str, transform: Transform = None) -> Dataset:
    """Build the labelled dataset described by ``cfg`` for ``split`` ("train" or "val").

    Items are ``(transform(image) or PIL RGB image, int label)``; every returned dataset has
    ``targets`` (list of int labels) and ``classes`` (class names, index = label).
    Fashion-MNIST is prepared from the Debian package on first use (see ``prepare_fashion_mnist``).
    """
    c = parse_dataset_config(cfg)
    _check_split(split)
    train = split == "train"
    if c.name == "coco":
        from mokd.config import ConfigError

        raise ConfigError("a COCO set (name: coco) is an instance-segmentation set read by the detection protocol "
                          "(mokd/data/coco.py), not a classification dataset", key="name")
    if c.name == "imagefolder":
        split_dir = c.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(_imagefolder_missing_message(split_dir))
        fl = c.file_list(split)
        folder = ImageFolderDataset(
            split_dir,
            class_list=read_file_list(c.class_list) if c.class_list is not None else None,
            files=read_file_list(fl) if fl is not None else None,
            max_per_class=None if c.skip_per_class else c.max_per_class,
            transform=transform,
            on_bad_image=c.on_bad_image,
        )
        if c.skip_per_class:
            folder.samples = per_class_range(folder.targets, c.skip_per_class, c.max_per_class, folder.samples)
            if not folder.samples:
                raise ValueError(f"skip_per_class {c.skip_per_class} leaves no image under {split_dir}")
            folder.targets = [y for _, y in folder.samples]
        return folder
    if c.name == "fashion_mnist":
        prepare_fashion_mnist(c.root)
        base: Dataset = FashionMNISTRGB(c.root, train=train, transform=transform)
    elif c.name == "cifar10":
        base = LocalCIFAR10(c.root, train=train, transform=transform)
    else:
        base = LocalCIFAR100(c.root, train=train, transform=transform)
    return _select(base, c, split)


def file_list_entries(dataset: Dataset, indices: Sequence[int]) -> list[str]:
    """File-list lines that select ``dataset[indices]`` again from the same split.

    Imagefolder: ``class/filename``; CIFAR / Fashion-MNIST: the sample's index in the full split.
    Use with :func:`class_balanced_subset` and :func:`write_file_list` to save 1 % / 10 % splits.
    """
    if isinstance(dataset, ImageFolderDataset):
        return [dataset.samples[i][0] for i in indices]
    if isinstance(dataset, SelectedDataset):
        return [str(dataset.source_indices[i]) for i in indices]
    return [str(int(i)) for i in indices]


IMAGEFOLDER_LAYOUT = (
    "expected root/train/<class>/<image> and root/val/<class>/<image> (ImageNet: download ILSVRC2012 from "
    "https://image-net.org and arrange the validation images into class folders)"
)


def _imagefolder_missing_message(path: Path) -> str:
    return f"image folder path {path} not found; {IMAGEFOLDER_LAYOUT}"


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")


def check_dataset(cfg: Mapping[str, Any], split: str) -> None:
    """Cheaply verify that ``build_dataset(cfg, split)`` will find its files (no image is decoded).

    Raises FileNotFoundError naming the first missing path and how to get the data, ValueError for a
    bad config. Writes nothing.
    """
    c = parse_dataset_config(cfg)
    _check_split(split)
    if c.name == "coco":
        from mokd.data.coco import check_coco_split

        check_coco_split(c.root, c.coco_splits[split])
        return
    if c.class_list is not None:
        _require_file(c.class_list, "class list file")
    fl = c.file_list(split)
    if fl is not None:
        _require_file(fl, "file list")

    if c.name == "fashion_mnist":
        missing = missing_raw_files(c.root)
        debian_missing = [
            DEBIAN_SOURCE_DIR / f"{p.name}.gz"
            for p in missing
            if not (DEBIAN_SOURCE_DIR / f"{p.name}.gz").is_file()
        ]
        if missing and debian_missing:
            raise FileNotFoundError(
                f"Fashion-MNIST raw file {missing[0]} not found and its source {debian_missing[0]} "
                "is missing; "
                f"run `{INSTALL_HINT}` (then it is prepared automatically), or call "
                f"mokd.data.prepare_fashion_mnist({str(c.root)!r}) on a machine with internet access"
            )
        return
    if c.name in CIFAR_SPECS:
        for path in cifar_files(c.root, c.name, split == "train"):
            if not path.is_file():
                raise FileNotFoundError(cifar_missing_message(path, c.name))
        return

    split_dir = c.root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(_imagefolder_missing_message(split_dir))
    flat = flat_layout_error(split_dir)
    if flat is not None:
        raise FlatImageFolderError(flat)
    classes = read_file_list(c.class_list) if c.class_list is not None else list_class_dirs(split_dir)
    if not classes:
        raise FileNotFoundError(f"image folder {split_dir} exists but has no class folders; {IMAGEFOLDER_LAYOUT}")
    for cls in classes:
        if not (split_dir / cls).is_dir():
            raise FileNotFoundError(f"class folder not found: {split_dir / cls} (listed in {c.class_list})")
    if fl is not None:
        wanted = set(classes)
        for entry in read_file_list(fl):
            rel = file_list_entry_path(entry)
            if rel.split("/", 1)[0] not in wanted and c.class_list is not None:
                continue  # dropped by the class list
            if not (split_dir / rel).is_file():
                raise FileNotFoundError(f"image {split_dir / rel} listed in {fl} not found")
