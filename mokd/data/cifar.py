"""CIFAR-10/100 in their standard python-pickle format: a writer and md5-free torchvision loaders."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

from mokd.atomic import atomic_write

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarSpec:
    """File layout of one CIFAR variant."""

    base_folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    archive: str


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        base_folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": CifarSpec(
        base_folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        archive="cifar-100-python.tar.gz",
    ),
}


def _spec(name: str) -> CifarSpec:
    if name not in CIFAR_SPECS:
        raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {sorted(CIFAR_SPECS)}")
    return CIFAR_SPECS[name]


def cifar_files(root: str | os.PathLike[str], name: str, train: bool) -> list[Path]:
    """The batch files of one split plus the meta file, as expected under ``root``."""
    spec = _spec(name)
    base = Path(root) / spec.base_folder
    files = spec.train_files if train else spec.test_files
    return [base / f for f in files] + [base / spec.meta_file]


def cifar_missing_message(path: Path, name: str) -> str:
    """Error text for a missing CIFAR file, saying how to get the dataset."""
    spec = _spec(name)
    tv_class = "CIFAR10" if name == "cifar10" else "CIFAR100"
    return (
        f"{name} file {path} not found; download {spec.archive} from {CIFAR_URL} and extract it into "
        f"{path.parent.parent} (or run torchvision.datasets.{tv_class}({str(path.parent.parent)!r}, "
        f"download=True) on a machine with internet access)"
    )


def _check_files(root: str | os.PathLike[str], name: str, train: bool) -> None:
    for path in cifar_files(root, name, train):
        if not path.is_file():
            raise FileNotFoundError(cifar_missing_message(path, name))


class _LocalFilesMixin:
    """Replace torchvision's md5 checks by existence checks of the requested split's files."""

    _variant: str
    root: str
    train: bool

    def _check_integrity(self) -> bool:
        return all(p.is_file() for p in cifar_files(self.root, self._variant, self.train))

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        _check_files(root, self._variant, train)
        super().__init__(str(root), train=train, transform=transform, download=False)
        self.targets = [int(t) for t in self.targets]


class LocalCIFAR10(_LocalFilesMixin, CIFAR10):
    """CIFAR-10 from ``root/cifar-10-batches-py``, without md5 checks (locally written files load)."""

    _variant = "cifar10"
    meta = {**CIFAR10.meta, "md5": None}


class LocalCIFAR100(_LocalFilesMixin, CIFAR100):
    """CIFAR-100 (fine labels) from ``root/cifar-100-python``, without md5 checks."""

    _variant = "cifar100"
    meta = {**CIFAR100.meta, "md5": None}


def _atomic_pickle(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: pickle.dump(obj, f, protocol=2))


def write_cifar_like(
    root: str | os.PathLike[str],
    name: str,
    images: np.ndarray,
    labels: Sequence[int],
    train: bool,
    label_names: Sequence[str],
    coarse_labels: Sequence[int] | None = None,
    coarse_label_names: Sequence[str] | None = None,
) -> Path:
    """Write ``images`` (N,32,32,3 uint8, HWC RGB) and ``labels`` as one CIFAR split; return the folder.

    The format is CIFAR's python version: pickled dicts with str keys, ``data`` an (N, 3072) uint8
    array (the 1024 R values, then G, then B, each row-major). CIFAR-10 writes ``data_batch_1..5``
    (train, split evenly) or ``test_batch`` with ``labels``, and ``batches.meta`` with
    ``label_names``; CIFAR-100 writes ``train`` or ``test`` with ``fine_labels`` (and
    ``coarse_labels`` if given) and ``meta`` with ``fine_label_names`` (``coarse_label_names``).
    """
    spec = _spec(name)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    labels = [int(y) for y in labels]
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if any(not 0 <= y < len(label_names) for y in labels):
        raise ValueError(f"labels must lie in [0, {len(label_names)})")
    if coarse_labels is not None and name != "cifar100":
        raise ValueError("coarse labels exist only for cifar100")
    if coarse_labels is not None and len(coarse_labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(coarse_labels)} coarse labels")

    base = Path(root) / spec.base_folder
    base.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))
    files = spec.train_files if train else spec.test_files
    parts = np.array_split(np.arange(len(images)), len(files))
    for b, (fname, idx) in enumerate(zip(files, parts, strict=True), start=1):
        batch_label = f"training batch {b} of {len(files)}" if train else f"testing batch {b} of {len(files)}"
        entry: dict[str, Any] = {
            "batch_label": batch_label,
            spec.label_key: [labels[i] for i in idx],
            "data": data[idx],
            "filenames": [f"{'train' if train else 'test'}_{i:06d}.png" for i in idx],
        }
        if coarse_labels is not None:
            entry["coarse_labels"] = [int(coarse_labels[i]) for i in idx]
        _atomic_pickle(base / fname, entry)

    meta_path = base / spec.meta_file
    meta: dict[str, Any] = {}
    if meta_path.is_file():  # keep what the other split's write put there (e.g. coarse names)
        with open(meta_path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
    meta[spec.names_key] = list(label_names)
    if name == "cifar10":
        meta.update(num_cases_per_batch=int(max(len(p) for p in parts)), num_vis=3072)
    elif coarse_label_names is not None:
        meta["coarse_label_names"] = list(coarse_label_names)
    _atomic_pickle(meta_path, meta)
    return base
