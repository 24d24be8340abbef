"""COCO-format instance sets (images folder + instances JSON) as torchvision detection samples.

Layout (COCO 2017's): ``root/<split>/<file_name>`` and ``root/annotations/instances_<split>.json`` with
split ``train2017`` / ``val2017``. Items are ``(image, target)``: a float (3, H, W) tensor in [0, 1] and
``{"boxes": (N, 4) float x1,y1,x2,y2, "labels": (N,) int64 in 1..C, "masks": (N, H, W) uint8,
"image_id": int}``, what torchvision's Mask R-CNN expects. Crowd annotations are left out of the targets
(as torchvision's and Detectron2's training code do); COCOeval still sees them in the ground truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

COCO_SPLITS = ("train2017", "val2017")


def coco_missing_message(path: Path, root: Path) -> str:
    """How to obtain COCO, naming the missing path."""
    return (
        f"COCO path {path} not found; expected {root}/<split>/ images and "
        f"{root}/annotations/instances_<split>.json for the splits {COCO_SPLITS}. Download COCO 2017 "
        f"(train2017.zip, val2017.zip, annotations_trainval2017.zip) from https://cocodataset.org/#download "
        f"and unzip them into {root}, or write a small COCO-format set from Fashion-MNIST with "
        f"mokd.data.coco_synthetic.build_synthetic_coco (`python -m mokd prepare-data`)"
    )


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(image folder, instances JSON) of a split; FileNotFoundError naming the first missing one."""
    root = Path(root)
    images, annotations = root / split, root / "annotations" / f"instances_{split}.json"
    for path in (annotations, images):
        if not path.exists():
            raise FileNotFoundError(coco_missing_message(path, root))
    return images, annotations


# Annotation files up to this size are parsed whole by the check (COCO 2017's val: 25 MB); a larger one
# (train: 448 MB) is checked for a complete JSON object without reading it all.
FULL_CHECK_BYTES = 64 * 2**20
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def check_coco_split(root: str | Path, split_folder: str) -> None:
    """Check a COCO split without loading it: the image folder holds images, the annotation file is a
    complete JSON object (parsed, with `images`, `annotations` and `categories`, when not too large).
    FileNotFoundError / ValueError name the path and what is wrong."""
    images, annotations = coco_paths(root, split_folder)
    if not images.is_dir():
        raise FileNotFoundError(f"COCO image folder {images} is not a folder; {coco_missing_message(images, Path(root))}")
    with os.scandir(images) as it:
        if not any(e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) for e in it):
            raise FileNotFoundError(f"COCO image folder {images} exists but holds no .jpg/.png image")
    size = annotations.stat().st_size
    try:
        with open(annotations, "rb") as f:
            if size <= FULL_CHECK_BYTES:
                record = json.loads(f.read())
                missing = [k for k in ("images", "annotations", "categories") if not isinstance(record, dict) or k not in record]
                if missing:
                    raise ValueError(f"COCO annotation file {annotations} has no {missing} (not an instances_*.json file)")
                return
            head = f.read(64).lstrip()
            f.seek(max(size - 64, 0))
            tail = f.read().rstrip()
    except OSError as exc:
        raise FileNotFoundError(f"COCO annotation file {annotations} cannot be read: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"COCO annotation file {annotations} is not valid JSON ({exc}); download it again") from exc
    if not head.startswith(b"{") or not tail.endswith(b"}"):
        raise ValueError(f"COCO annotation file {annotations} is not a complete JSON object (truncated?); download it again")


def load_coco(annotation_file: str | Path) -> COCO:
    """pycocotools' COCO index; its chatter goes to stderr so stdout stays clean."""
    with contextlib.redirect_stdout(sys.stderr):
        return COCO(str(annotation_file))


def _usable(ann: dict[str, Any]) -> bool:
    """A non-crowd annotation with a box of positive size."""
    _, _, w, h = ann["bbox"]
    return not ann.get("iscrowd", 0) and w > 0 and h > 0


class CocoInstances(Dataset):
    """A COCO-format instance split read with pycocotools.

    ``skip_empty`` (default: ``train``) drops images without a usable annotation, as detection training
    does. Category ids map to contiguous labels 1..C in increasing id order (0 is background);
    ``label_to_cat`` maps back for COCOeval.
    """

    def __init__(self, root: str | Path, split: str, train: bool = False, skip_empty: bool | None = None):
        self.root = Path(root)
        self.split = split
        self.image_dir, self.annotation_file = coco_paths(root, split)
        self.coco = load_coco(self.annotation_file)
        self.cat_ids: list[int] = sorted(self.coco.getCatIds())
        self.cat_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat = {label: c for c, label in self.cat_to_label.items()}
        self.classes = [self.coco.cats[c]["name"] for c in self.cat_ids]
        ids = sorted(self.coco.getImgIds())
        if train if skip_empty is None else skip_empty:
            ids = [i for i in ids if any(_usable(a) for a in self.coco.imgToAnns.get(i, []))]
        self.ids: list[int] = ids

    @property
    def num_classes(self) -> int:
        """Foreground categories (the detector adds background)."""
        return len(self.cat_ids)

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> torch.Tensor:
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(coco_missing_message(path, self.root))
        with Image.open(path) as img:
            return pil_to_tensor(img.convert("RGB")).float().div_(255.0)

    def load_target(self, image_id: int) -> dict[str, Any]:
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if _usable(a)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        labels = torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
        return {
            "boxes": boxes[keep],
            "labels": labels[keep],
            "masks": torch.from_numpy(masks)[keep],
            "image_id": int(image_id),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        return self.load_image(image_id), self.load_target(image_id)


def hflip_sample(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mirror an image (C, H, W) and its boxes and masks left-right."""
    width = image.shape[-1]
    out = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    out["boxes"] = boxes
    out["masks"] = target["masks"].flip(-1)
    return image.flip(-1), out
