"""Image folders: class lists, SimCLR-style file lists, corrupt files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mokd.data import (
    ImageFolderDataset,
    UnreadableImageError,
    build_dataset,
    class_balanced_subset,
    eval_transform,
    file_list_entries,
    read_file_list,
    write_file_list,
)


def test_all_classes_sorted(image_root: Path, classes: tuple[str, ...], per_class: int) -> None:
    ds = build_dataset({"name": "imagefolder", "root": image_root}, "train")
    assert isinstance(ds, ImageFolderDataset)
    assert ds.classes == list(classes)
    assert len(ds) == len(classes) * per_class
    img, label = ds[per_class]  # first image of the second class
    assert isinstance(img, Image.Image) and img.mode == "RGB" and label == 1
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(ds.path(per_class)).convert("RGB")))


def test_class_list_filters_and_relabels_in_file_order(
    image_root: Path, tmp_path: Path, classes: tuple[str, ...], per_class: int
) -> None:
    cl = write_file_list(tmp_path / "classes.txt", [classes[2], classes[0]])
    for split in ("train", "val"):
        ds = build_dataset({"name": "imagefolder", "root": image_root, "class_list": cl}, split)
        assert ds.classes == [classes[2], classes[0]]
        assert len(ds) == 2 * per_class
        for i in range(len(ds)):
            cls_dir = ds.path(i).parent.name
            assert ds[i][1] == {classes[2]: 0, classes[0]: 1}[cls_dir]


def test_missing_class_in_class_list_names_folder(
    image_root: Path, tmp_path: Path, classes: tuple[str, ...]
) -> None:
    cl = write_file_list(tmp_path / "classes.txt", [classes[0], "n99999999"])
    with pytest.raises(FileNotFoundError, match="n99999999"):
        build_dataset({"name": "imagefolder", "root": image_root, "class_list": cl}, "train")


def test_simclr_file_list_selects_exactly_those_files(
    image_root: Path, tmp_path: Path, classes: tuple[str, ...], per_class: int
) -> None:
    lines = [f"{classes[0]}_1.JPEG", f"{classes[2]}_3.JPEG", f"{classes[2]}/{classes[2]}_0.JPEG"]
    fl = tmp_path / "1percent.txt"
    fl.write_text("\n".join(lines) + "\n\n")
    cfg = {"name": "imagefolder", "root": image_root, "file_list": fl}
    ds = build_dataset(cfg, "train")
    assert [str(ds.path(i).relative_to(image_root / "train")) for i in range(len(ds))] == [
        f"{classes[0]}/{classes[0]}_1.JPEG",
        f"{classes[2]}/{classes[2]}_3.JPEG",
        f"{classes[2]}/{classes[2]}_0.JPEG",
    ]
    assert ds.targets == [0, 2, 2]  # labels of the full class set, as for the val split
    assert len(build_dataset(cfg, "val")) == len(classes) * per_class  # a plain file_list is train-only


def test_max_per_class_is_first_n(image_root: Path, classes: tuple[str, ...]) -> None:
    ds = build_dataset({"name": "imagefolder", "root": image_root, "max_per_class": 2}, "val")
    assert [ds.path(i).name for i in range(len(ds))] == [f"{c}_{i}.JPEG" for c in classes for i in range(2)]


def test_saved_balanced_subset_round_trips(image_root: Path, tmp_path: Path) -> None:
    full = build_dataset({"name": "imagefolder", "root": image_root}, "train")
    idx = class_balanced_subset(full.targets, 0.5, seed=1)
    fl = write_file_list(tmp_path / "half.txt", file_list_entries(full, idx))
    sub = build_dataset({"name": "imagefolder", "root": image_root, "file_list": fl}, "train")
    assert [sub.path(i) for i in range(len(sub))] == [full.path(i) for i in idx]
    assert read_file_list(fl) == file_list_entries(full, idx)


def _corrupt(image_root: Path) -> Path:
    """Overwrite one training JPEG (second class, third file) with garbage bytes."""
    cls = sorted(p.name for p in (image_root / "train").iterdir())[1]
    bad = image_root / "train" / cls / f"{cls}_2.JPEG"
    bad.write_bytes(b"this is not a jpeg \x00\xff" * 10)
    return bad


def test_corrupt_image_error_names_the_file(image_root: Path) -> None:
    bad = _corrupt(image_root)
    ds = build_dataset({"name": "imagefolder", "root": image_root}, "train")
    i = [ds.path(k) for k in range(len(ds))].index(bad)
    with pytest.raises(UnreadableImageError) as err:
        ds[i]
    assert str(bad) in str(err.value)
    ds[i + 1]  # others still load


def test_corrupt_image_skip_warns_and_returns_next_valid(
    image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _corrupt(image_root)
    cfg = {"name": "imagefolder", "root": image_root, "on_bad_image": "skip"}
    ds = build_dataset(cfg, "train", transform=eval_transform(16))
    i = [ds.path(k) for k in range(len(ds))].index(bad)
    with caplog.at_level(logging.WARNING, logger="mokd.data"):
        x, label = ds[i]
    assert str(bad) in caplog.text
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, 16, 16)
    expected, expected_label = ds[i + 1]
    assert torch.equal(x, expected) and label == expected_label


def test_unknown_config_key_is_named(image_root: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        build_dataset({"name": "imagefolder", "root": image_root, "image_size": 224}, "train")
    with pytest.raises(ValueError, match="on_bad_image"):
        build_dataset({"name": "imagefolder", "root": image_root, "on_bad_image": "ignore"}, "train")
