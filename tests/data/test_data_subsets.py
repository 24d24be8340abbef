"""Seeded class-balanced subsets and file-list helpers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mokd.data import class_balanced_subset, read_file_list, write_file_list

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
