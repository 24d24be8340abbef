"""The paper-format fixtures (mokd/data/paper_fixtures.py) and the check of every dataset kind on them:
a valid folder passes, an invalid one fails naming the path and what is wrong."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mokd.data import build_dataset, check_dataset
from mokd.data.imagefolder import FlatImageFolderError
from mokd.data.paper_fixtures import (
    IMAGENET_EXTRA_WNIDS,
    build_paper_fixtures,
    mask_polygons,
    read_class_list,
)

CLASS_LIST = "config/imagenet100_classes.txt"


@pytest.fixture(scope="module")
def fixtures(fashion_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fixtures") / "paper"
    return build_paper_fixtures(root, fashion_root, CLASS_LIST, extra_classes=3, train_per_class=3, val_per_class=1,
                                image_size=40, cifar_train_per_class=2, cifar_test_per_class=1, coco_train=6,
                                coco_val=4, coco_canvas=96)


def test_imagenet_layout_and_the_imagenet100_subset(fixtures: Path) -> None:
    wnids = read_class_list(CLASS_LIST)
    imagenet = fixtures / "imagenet"
    train = sorted(p.name for p in (imagenet / "train").iterdir())
    assert train == sorted(wnids + list(IMAGENET_EXTRA_WNIDS[:3]))
    assert sorted((imagenet / "train" / wnids[0]).iterdir())[0].name == f"{wnids[0]}_1.JPEG"
    assert sorted(p.name for p in (imagenet / "val").iterdir()) == train  # every class folder, in both splits
    val_names = [p.name for d in (imagenet / "val").iterdir() for p in d.iterdir()]
    assert len(val_names) == 10 and all(re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", n) for n in val_names)
    for split in ("train", "val"):
        check_dataset({"name": "imagefolder", "root": str(imagenet)}, split)
        check_dataset({"name": "imagefolder", "root": str(imagenet), "class_list": CLASS_LIST}, split)
    subset = build_dataset({"name": "imagefolder", "root": str(imagenet), "class_list": CLASS_LIST}, "train")
    # the label space of the 100 listed wnids (none of the extra ones); images in the first 10 classes
    assert subset.classes == wnids and len(subset) == 30 and sorted(set(subset.targets)) == list(range(10))
    image, label = subset[0]
    assert image.mode == "RGB" and label == 0 and min(image.size) == 40


def test_simclr_split_files_select_their_images(fixtures: Path) -> None:
    splits = fixtures / "imagenet" / "splits"
    lines = (splits / "1percent.txt").read_text().split()
    assert len(lines) == 20 and all(re.fullmatch(r"n\d{8}_\d+\.JPEG", ln) for ln in lines)  # 2 per class
    spec = {"name": "imagefolder", "root": str(fixtures / "imagenet"), "file_list": str(splits / "10percent.txt")}
    check_dataset(spec, "train")
    assert len(build_dataset(spec, "train")) == len((splits / "10percent.txt").read_text().split())


def test_flat_val_folder_says_how_to_arrange_it(fixtures: Path, tmp_path: Path) -> None:
    """ILSVRC-2012's val archive unpacks flat: the check and the loader say what to do, not 'not found'."""
    flat = tmp_path / "imagenet"
    shutil.copytree(fixtures / "imagenet" / "train", flat / "train")
    (flat / "val").mkdir()
    for image in (fixtures / "imagenet" / "val").glob("*/*.JPEG"):
        shutil.copy(image, flat / "val" / image.name)
    for call in (check_dataset, build_dataset):
        with pytest.raises(FlatImageFolderError) as err:
            call({"name": "imagefolder", "root": str(flat)}, "val")
        message = str(err.value)
        assert f"{flat / 'val'} holds 10 images directly and no class folders" in message
        assert f"{flat / 'val'}/<wnid>/<image>" in message and "valprep.sh" in message
    check_dataset({"name": "imagefolder", "root": str(flat)}, "train")  # the train split is fine


def test_cifar_files_as_distributed(fixtures: Path) -> None:
    """The file names and pickled dicts of CIFAR's python archives, read by torchvision's classes."""
    import torchvision

    base10, base100 = fixtures / "cifar" / "cifar-10-batches-py", fixtures / "cifar" / "cifar-100-python"
    assert sorted(p.name for p in base10.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    assert sorted(p.name for p in base100.iterdir()) == ["meta", "test", "train"]
    with open(base100 / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert {"data", "fine_labels", "coarse_labels", "filenames", "batch_label"} <= set(entry)
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (20, 3072)  # 10 classes with images x 2
    assert sorted(set(entry["fine_labels"])) == list(range(0, 100, 10))
    for cls, n_train in ((torchvision.datasets.CIFAR10, 20), (torchvision.datasets.CIFAR100, 20)):
        # torchvision's own reader; only its md5 checks (of the real archive's bytes) are switched off
        reader = type("Unchecked", (cls,), {"_check_integrity": lambda self: True, "meta": {**cls.meta, "md5": None}})
        data = reader(str(fixtures / "cifar"), train=True, download=False)
        assert len(data) == n_train and data[0][0].size == (32, 32)
    test = reader(str(fixtures / "cifar"), train=False)
    assert len(test.classes) == 100 and test.classes[:2] == ["apple", "aquarium_fish"]
    for name in ("cifar10", "cifar100"):
        for split in ("train", "val"):
            check_dataset({"name": name, "root": str(fixtures / "cifar")}, split)


def test_cifar_check_names_a_missing_batch(fixtures: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures / "cifar", tmp_path / "cifar")
    (tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/data_batch_3 not found; download"):
        check_dataset({"name": "cifar10", "root": str(tmp_path / "cifar")}, "train")
    check_dataset({"name": "cifar10", "root": str(tmp_path / "cifar")}, "val")


def test_coco_2017_layout_with_polygons_rle_and_crowds(fixtures: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = fixtures / "coco"
    for split in ("train2017", "val2017"):
        gt = COCO(str(coco / "annotations" / f"instances_{split}.json"))
        anns = gt.loadAnns(gt.getAnnIds())
        polygons = [a for a in anns if isinstance(a["segmentation"], list)]
        crowds = [a for a in anns if a["iscrowd"]]
        rles = [a for a in anns if isinstance(a["segmentation"], dict) and not a["iscrowd"]]
        assert polygons and crowds and rles
        assert all(isinstance(a["segmentation"]["counts"], list) for a in crowds)  # uncompressed RLE, as COCO's
        assert all(isinstance(a["segmentation"]["counts"], str) for a in rles)
        for image in gt.loadImgs(gt.getImgIds()):
            assert re.fullmatch(r"\d{12}\.jpg", image["file_name"]) and (coco / split / image["file_name"]).is_file()
        for a in polygons + crowds:  # area and box agree with the mask each format encodes
            mask = gt.annToMask(a)
            assert a["area"] == pytest.approx(float(mask.sum()))
            ys, xs = np.nonzero(mask)
            assert a["bbox"][0] == pytest.approx(xs.min(), abs=1.0) and a["bbox"][1] == pytest.approx(ys.min(), abs=1.0)
        if split == "val2017":  # COCOeval reads every format: the ground truth as detections scores AP 1
            dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                    for a in anns if not a["iscrowd"]]
            ev = COCOeval(gt, gt.loadRes(dets), "bbox")
            ev.evaluate(), ev.accumulate(), ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0)
        check_dataset({"name": "coco", "root": str(coco)}, "train" if split == "train2017" else "val")


def test_mask_polygons_trace_the_mask() -> None:
    from pycocotools import mask as mask_utils

    mask = np.zeros((12, 10), dtype=np.uint8)
    mask[2:7, 3:8] = 1
    polygons = mask_polygons(mask)
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, 12, 10)))
    assert polygons and (decoded == mask).mean() > 0.9 and decoded[4, 5] == 1 and decoded[0, 0] == 0


@pytest.mark.parametrize("damage", ["missing annotations", "truncated annotations", "no images", "not instances"])
def test_coco_check_names_what_is_wrong(fixtures: Path, tmp_path: Path, damage: str) -> None:
    coco = tmp_path / "coco"
    shutil.copytree(fixtures / "coco", coco)
    ann = coco / "annotations" / "instances_val2017.json"
    if damage == "missing annotations":
        ann.unlink()
        error, match = FileNotFoundError, rf"COCO path {ann} not found; expected .*cocodataset.org"
    elif damage == "truncated annotations":
        ann.write_text(ann.read_text()[:-40])
        error, match = ValueError, rf"COCO annotation file {ann} is not valid JSON"
    elif damage == "no images":
        for image in (coco / "val2017").iterdir():
            image.unlink()
        error, match = FileNotFoundError, rf"COCO image folder {coco / 'val2017'} exists but holds no"
    else:
        ann.write_text(json.dumps({"images": []}))
        error, match = ValueError, r"has no \['annotations', 'categories'\]"
    with pytest.raises(error, match=match):
        check_dataset({"name": "coco", "root": str(coco)}, "val")
    check_dataset({"name": "coco", "root": str(coco)}, "train")


def test_coco_is_not_a_classification_dataset(fixtures: Path) -> None:
    from mokd.config import ConfigError

    with pytest.raises(ConfigError, match="read by the detection protocol"):
        build_dataset({"name": "coco", "root": str(fixtures / "coco")}, "train")
    with pytest.raises(ConfigError, match="'train': the split folder names are for COCO sets"):
        check_dataset({"name": "cifar10", "root": str(fixtures / "cifar"), "train": "x"}, "train")


def test_fixtures_are_built_once(fixtures: Path, fashion_root: Path) -> None:
    manifest = json.loads((fixtures / "fixtures.json").read_text())
    again = build_paper_fixtures(fixtures, fashion_root, CLASS_LIST, extra_classes=3, train_per_class=3,
                                 val_per_class=1, image_size=40, cifar_train_per_class=2, cifar_test_per_class=1,
                                 coco_train=6, coco_val=4, coco_canvas=96)
    assert again == fixtures and json.loads((fixtures / "fixtures.json").read_text()) == manifest
    with pytest.raises(FileExistsError, match="remove it or choose another --root"):
        build_paper_fixtures(fixtures, fashion_root, CLASS_LIST, train_per_class=5)
