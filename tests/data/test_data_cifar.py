"""CIFAR-10/100: files written in the real pickle format load back identically."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mokd.data import build_dataset, check_dataset, write_cifar_like


def _data(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [int(y) for y in rng.integers(0, n_classes, n)]
    return images, labels


@pytest.mark.parametrize(("name", "n_classes"), [("cifar10", 10), ("cifar100", 100)])
def test_round_trip(tmp_path: Path, name: str, n_classes: int) -> None:
    names = [f"class_{i}" for i in range(n_classes)]
    written = {}
    for train, n, seed in ((True, 13, 0), (False, 7, 1)):
        images, labels = _data(n, n_classes, seed)
        write_cifar_like(tmp_path, name, images, labels, train=train, label_names=names)
        written["train" if train else "val"] = (images, labels)
    for split, (images, labels) in written.items():
        ds = build_dataset({"name": name, "root": tmp_path}, split)
        assert len(ds) == len(images)
        assert ds.classes == names
        for i in range(len(ds)):
            img, label = ds[i]
            assert img.mode == "RGB"
            assert np.array_equal(np.asarray(img), images[i])
            assert label == labels[i]


def test_cifar10_file_format(tmp_path: Path) -> None:
    images, labels = _data(10, 10, 2)
    base = write_cifar_like(tmp_path, "cifar10", images, labels, train=True, label_names=list("abcdefghij"))
    assert sorted(p.name for p in base.iterdir()) == ["batches.meta"] + [
        f"data_batch_{i}" for i in range(1, 6)
    ]
    with open(base / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert batch["data"].shape == (2, 3072) and batch["data"].dtype == np.uint8
    assert np.array_equal(batch["data"][0, :1024].reshape(32, 32), images[0, :, :, 0])  # red plane first
    assert batch["labels"] == labels[:2]
    with open(base / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"] == list("abcdefghij")


def test_cifar100_keys(tmp_path: Path) -> None:
    images, labels = _data(4, 100, 3)
    base = write_cifar_like(
        tmp_path, "cifar100", images, labels, train=False, label_names=[str(i) for i in range(100)]
    )
    with open(base / "test", "rb") as f:
        assert pickle.load(f, encoding="latin1")["fine_labels"] == labels
    with open(base / "meta", "rb") as f:
        assert "fine_label_names" in pickle.load(f, encoding="latin1")


def test_index_file_list_and_class_list(tmp_path: Path) -> None:
    images, labels = _data(30, 10, 4)
    names = [f"c{i}" for i in range(10)]
    write_cifar_like(tmp_path, "cifar10", images, labels, train=True, label_names=names)
    (tmp_path / "subset.txt").write_text("5\n2\n17\n")
    ds = build_dataset({"name": "cifar10", "root": tmp_path, "file_list": tmp_path / "subset.txt"}, "train")
    assert ds.source_indices == [5, 2, 17]
    assert [ds[i][1] for i in range(3)] == [labels[5], labels[2], labels[17]]
    assert np.array_equal(np.asarray(ds[2][0]), images[17])
    keep = names[labels[0]]
    (tmp_path / "classes.txt").write_text(keep + "\n")
    ds = build_dataset({"name": "cifar10", "root": tmp_path, "class_list": tmp_path / "classes.txt"}, "train")
    assert ds.classes == [keep] and set(ds.targets) == {0} and len(ds) == labels.count(labels[0])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cifar10", "cifar-10-batches-py/test_batch"), ("cifar100", "cifar-100-python/test")],
)
def test_missing_files_name_expected_path(tmp_path: Path, name: str, expected: str) -> None:
    for call in (
        lambda: build_dataset({"name": name, "root": tmp_path}, "val"),
        lambda: check_dataset({"name": name, "root": tmp_path}, "val"),
    ):
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert str(tmp_path / expected) in str(err.value)
        assert "cs.toronto.edu" in str(err.value)
