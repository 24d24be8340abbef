"""Seeded class-balanced subsets, file-list helpers, and per-class ranges (skip_per_class, max_per_class)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mokd.config import ConfigError
from mokd.data import build_dataset, class_balanced_subset, read_file_list, write_cifar_like, write_file_list

LABELS = [y for y in range(10) for _ in range(50)] + [10] * 3  # ten classes of 50, one of 3


def test_balanced_per_class() -> None:
    idx = class_balanced_subset(LABELS, 0.1, seed=0)
    counts = Counter(LABELS[i] for i in idx)
    assert all(counts[y] == 5 for y in range(10))
    assert counts[10] == 1  # rounds down to 0, kept at 1
    assert idx == sorted(set(idx))


def test_every_class_covered_at_tiny_fraction() -> None:
    idx = class_balanced_subset(LABELS, 0.001, seed=3)
    assert {LABELS[i] for i in idx} == set(LABELS) and len(idx) == 11


def test_seeded_determinism() -> None:
    a = class_balanced_subset(LABELS, 0.2, seed=7)
    assert a == class_balanced_subset(list(LABELS), 0.2, seed=7)
    assert a != class_balanced_subset(LABELS, 0.2, seed=8)
    assert class_balanced_subset(LABELS, 1.0, seed=0) == list(range(len(LABELS)))


def test_bad_fraction() -> None:
    with pytest.raises(ValueError):
        class_balanced_subset(LABELS, 0.0, seed=0)


def test_file_list_round_trip(tmp_path: Path) -> None:
    path = write_file_list(tmp_path / "sub" / "list.txt", ["n01_1.JPEG", "a/b.png", 42])
    assert read_file_list(path) == ["n01_1.JPEG", "a/b.png", "42"]
    assert [p.name for p in path.parent.iterdir()] == ["list.txt"]  # no temp files left
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_file_list(tmp_path / "missing.txt")


# A CIFAR-10-format train split with these labels: class 0 at positions 0 2 5 6 9, class 1 at 1 4 7,
# class 2 at 3 8.
RANGE_LABELS = [0, 1, 0, 2, 1, 0, 0, 1, 2, 0]


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    images = np.zeros((len(RANGE_LABELS), 32, 32, 3), dtype=np.uint8)
    write_cifar_like(tmp_path, "cifar10", images, RANGE_LABELS, train=True, label_names=list("abcdefghij"))
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # ranks 1-2 of each class: class 0 -> positions 2, 5; class 1 -> 4, 7; class 2 -> 8 (it has only 2)
        ({"skip_per_class": 1, "max_per_class": 2}, [2, 4, 5, 7, 8]),
        # ranks from 2 on: class 0 -> 5, 6, 9; class 1 -> 7; class 2 -> none
        ({"skip_per_class": 2}, [5, 6, 7, 9]),
        # the first two of each class, as before skip_per_class existed
        ({"max_per_class": 2}, [0, 1, 2, 3, 4, 8]),
        ({"skip_per_class": 0, "max_per_class": 2}, [0, 1, 2, 3, 4, 8]),
    ],
)
def test_skip_per_class_keeps_exact_indices(cifar_root: Path, spec: dict, expected: list[int]) -> None:
    ds = build_dataset({"name": "cifar10", "root": cifar_root, **spec}, "train")
    assert ds.source_indices == expected
    assert ds.targets == [RANGE_LABELS[i] for i in expected]


def test_skip_per_class_zero_changes_nothing(cifar_root: Path) -> None:
    plain = build_dataset({"name": "cifar10", "root": cifar_root}, "train")
    skip0 = build_dataset({"name": "cifar10", "root": cifar_root, "skip_per_class": 0}, "train")
    assert type(skip0) is type(plain) and len(skip0) == len(plain) == len(RANGE_LABELS)


def test_skip_per_class_ranges_are_disjoint(cifar_root: Path) -> None:
    first = build_dataset({"name": "cifar10", "root": cifar_root, "max_per_class": 1}, "train")
    held_out = build_dataset({"name": "cifar10", "root": cifar_root, "skip_per_class": 1, "max_per_class": 1}, "train")
    assert set(first.source_indices).isdisjoint(held_out.source_indices)
    assert held_out.source_indices == [2, 4, 8]


def test_negative_skip_per_class_is_an_error(cifar_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset config key 'skip_per_class' must be >= 0, got -1"):
        build_dataset({"name": "cifar10", "root": cifar_root, "skip_per_class": -1}, "train")


def test_skip_past_every_sample_is_an_error(cifar_root: Path) -> None:
    with pytest.raises(ValueError, match=r"skip_per_class 5 leaves no train sample of cifar10 \(the largest class has 5\)"):
        build_dataset({"name": "cifar10", "root": cifar_root, "skip_per_class": 5}, "train")


def test_skip_per_class_in_image_folders(image_root: Path, classes: tuple[str, ...]) -> None:
    ds = build_dataset({"name": "imagefolder", "root": image_root, "skip_per_class": 1, "max_per_class": 2}, "val")
    assert [ds.path(i).name for i in range(len(ds))] == [f"{c}_{i}.JPEG" for c in classes for i in (1, 2)]
    assert ds.targets == [0, 0, 1, 1, 2, 2]
    assert [ds[i][1] for i in range(len(ds))] == ds.targets
    with pytest.raises(ValueError, match="skip_per_class 4 leaves no image"):
        build_dataset({"name": "imagefolder", "root": image_root, "skip_per_class": 4}, "val")
