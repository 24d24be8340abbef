"""check_dataset: cheap pre-flight checks naming the missing path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mokd.data import check_dataset, write_file_list


def test_complete_image_folder_passes(image_root: Path, tmp_path: Path, classes: tuple[str, ...]) -> None:
    cl = write_file_list(tmp_path / "classes.txt", classes[:2])
    fl = write_file_list(tmp_path / "files.txt", [f"{classes[0]}_0.JPEG", f"{classes[2]}_1.JPEG"])
    for split in ("train", "val"):
        check_dataset({"name": "imagefolder", "root": image_root, "class_list": cl, "file_list": fl}, split)


def test_missing_split_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        check_dataset({"name": "imagefolder", "root": tmp_path / "imagenet"}, "val")
    assert str(tmp_path / "imagenet" / "val") in str(err.value)
    assert "image-net.org" in str(err.value)


def test_empty_split_dir_is_not_called_missing(tmp_path: Path) -> None:
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        check_dataset({"name": "imagefolder", "root": tmp_path / "imagenet"}, "val")
    message = str(err.value)
    assert f"{tmp_path / 'imagenet' / 'val'} exists but has no class folders" in message
    assert "not found" not in message and "root/val/<class>/<image>" in message


def test_missing_class_folder(image_root: Path, tmp_path: Path, classes: tuple[str, ...]) -> None:
    cl = write_file_list(tmp_path / "classes.txt", [classes[0], "n00000042"])
    with pytest.raises(FileNotFoundError, match=str(image_root / "train" / "n00000042")):
        check_dataset({"name": "imagefolder", "root": image_root, "class_list": cl}, "train")


def test_missing_listed_image(image_root: Path, tmp_path: Path, classes: tuple[str, ...]) -> None:
    fl = write_file_list(tmp_path / "files.txt", [f"{classes[0]}_0.JPEG", f"{classes[1]}_77.JPEG"])
    with pytest.raises(FileNotFoundError) as err:
        check_dataset({"name": "imagefolder", "root": image_root, "file_list": fl}, "train")
    assert str(image_root / "train" / classes[1] / f"{classes[1]}_77.JPEG") in str(err.value)


def test_missing_list_files(image_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        check_dataset(
            {"name": "imagefolder", "root": image_root, "class_list": tmp_path / "nope.txt"}, "train"
        )


def test_bad_config(image_root: Path) -> None:
    with pytest.raises(ValueError, match="roots"):
        check_dataset({"name": "imagefolder", "roots": image_root}, "train")
    with pytest.raises(ValueError, match="name"):
        check_dataset({"name": "imagenet", "root": image_root}, "train")
    with pytest.raises(ValueError, match="split"):
        check_dataset({"name": "imagefolder", "root": image_root}, "test")
