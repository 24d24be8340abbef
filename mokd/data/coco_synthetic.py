"""A small real COCO-format instance set built from Fashion-MNIST objects, for the CPU-scale detection run.

Each image is a ``canvas`` x ``canvas`` RGB picture (96 px by default): a smooth coloured noise background
with 1-3 (``objects_per_image``) Fashion-MNIST garments (28x28 grey, scaled x1-x2, bilinear) pasted at
non-overlapping places. An object's instance mask is the set of its (scaled) pixels brighter than
``mask_threshold``; exactly those pixels are pasted (grey, R=G=B), so the mask is the visible object. One category per source class
(ids 1..C, names from the source dataset). Masks are stored as RLE (``pycocotools.mask.encode``), boxes
and areas are computed from the masks. Train canvases use the source's train split, val canvases its
val (test) split. Output layout is COCO 2017's::

    out_dir/train2017/000000000001.png ...   out_dir/val2017/...
    out_dir/annotations/instances_train2017.json, instances_val2017.json
    out_dir/synthetic.json                   (the build parameters)

Every annotation also carries ``mokd_source`` ({index, x, y, size}: which source image, where, how
large), which pycocotools ignores. The set is deterministic for a seed and written to a temporary folder
that is renamed into place, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .datasets import build_dataset

SPLIT_SOURCES: dict[str, str] = {"train2017": "train", "val2017": "val"}
MANIFEST = "synthetic.json"
MAX_PLACEMENT_TRIES = 30


def _background(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """Smooth low-frequency colour noise plus fine grain, (canvas, canvas, 3) float in ~[10, 150]."""
    base = rng.uniform(20.0, 90.0, size=3)
    channels = []
    for c in range(3):
        coarse = rng.uniform(-1.0, 1.0, size=(5, 5)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((canvas, canvas), Image.BILINEAR))
        channels.append(base[c] + 30.0 * smooth)
    grain = rng.normal(0.0, 6.0, size=(canvas, canvas, 1))
    return np.stack(channels, axis=-1) + grain


def scaled_object(image: Image.Image, size: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """The source image as grey uint8 resized to ``size`` x ``size`` (bilinear) and its mask (> threshold)."""
    grey = np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return grey, grey > threshold


def _free_spot(
    rng: np.random.Generator, canvas: int, size: int, taken: list[tuple[int, int, int]]
) -> tuple[int, int] | None:
    """A top-left corner whose size x size window overlaps none of the ``taken`` (x, y, size) windows."""
    for _ in range(MAX_PLACEMENT_TRIES):
        x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        if all(x + size <= tx or tx + ts <= x or y + size <= ty or ty + ts <= y for tx, ty, ts in taken):
            return x, y
    return None


def _annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int) -> dict[str, Any]:
    """A COCO instance annotation from a full-canvas binary mask (RLE, bbox and area from the mask)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": 0,
    }


def _compose_split(
    source: Any,
    n_images: int,
    image_dir: Path,
    rng: np.random.Generator,
    canvas: int,
    objects_per_image: tuple[int, int],
    scale_range: tuple[float, float],
    mask_threshold: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write ``n_images`` PNGs into ``image_dir``; return their COCO image and annotation records."""
    image_dir.mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in range(1, n_images + 1):
        picture = _background(rng, canvas)
        taken: list[tuple[int, int, int]] = []
        for _ in range(int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))):
            index = int(rng.integers(len(source)))
            src, label = source[index]
            size = min(canvas, int(round(src.size[0] * rng.uniform(*scale_range))))
            spot = _free_spot(rng, canvas, size, taken)
            grey, obj_mask = scaled_object(src, size, mask_threshold)
            if spot is None or not obj_mask.any():
                continue
            x, y = spot
            taken.append((x, y, size))
            picture[y : y + size, x : x + size][obj_mask] = grey[obj_mask, None]
            full = np.zeros((canvas, canvas), dtype=np.uint8)
            full[y : y + size, x : x + size] = obj_mask
            ann = _annotation(full, len(annotations) + 1, image_id, int(label) + 1)
            ann["mokd_source"] = {"index": index, "x": x, "y": y, "size": size}
            annotations.append(ann)
        name = f"{image_id:012d}.png"
        Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8)).save(image_dir / name)
        images.append({"id": image_id, "file_name": name, "width": canvas, "height": canvas})
    return images, annotations


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True))


def _params(
    source: Mapping[str, Any], n_train: int, n_val: int, canvas: int, objects_per_image: Sequence[int],
    scale_range: Sequence[float], mask_threshold: int, seed: int,
) -> dict[str, Any]:
    """The build parameters, as stored in ``synthetic.json`` and compared on a rebuild."""
    lo, hi = (int(v) for v in objects_per_image)
    if not 1 <= lo <= hi:
        raise ValueError(f"objects_per_image must be (min, max) with 1 <= min <= max, got {objects_per_image!r}")
    s_lo, s_hi = (float(v) for v in scale_range)
    if not 0 < s_lo <= s_hi:
        raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range!r}")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train}, {n_val}")
    return {
        "source": dict(source), "n_train": int(n_train), "n_val": int(n_val), "canvas": int(canvas),
        "objects_per_image": [lo, hi], "scale_range": [s_lo, s_hi], "mask_threshold": int(mask_threshold),
        "seed": int(seed),
    }


def _existing(out: Path, params: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds this very set; an error when it holds something else."""
    if not out.exists():
        return False
    manifest = out / MANIFEST
    if not overwrite:
        if manifest.is_file() and json.loads(manifest.read_text()) == params:
            return True
        raise FileExistsError(
            f"{out} exists and is not a synthetic COCO set built with these parameters ({params}); "
            f"remove it or pass overwrite=True (--overwrite)"
        )
    return False


def build_synthetic_coco(
    out_dir: str | Path,
    source: Mapping[str, Any],
    n_train: int,
    n_val: int,
    canvas: int = 96,
    objects_per_image: Sequence[int] = (1, 3),
    seed: int = 0,
    scale_range: Sequence[float] = (1.0, 2.0),
    mask_threshold: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write a COCO-format instance set of ``n_train`` / ``n_val`` canvases into ``out_dir``; return it.

    ``source`` is a dataset config for :func:`mokd.data.build_dataset` (e.g.
    ``{"name": "fashion_mnist", "root": "data"}``). A folder already built with the same parameters is
    reused as is; a different one is an error unless ``overwrite``.
    """
    out = Path(out_dir)
    params = _params(source, n_train, n_val, canvas, objects_per_image, scale_range, mask_threshold, seed)
    if _existing(out, params, overwrite):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the set is meant to be shared
    try:
        for split_index, (split, source_split) in enumerate(SPLIT_SOURCES.items()):
            dataset = build_dataset(source, source_split)
            rng = np.random.default_rng([int(seed), split_index])
            n = params["n_train"] if split == "train2017" else params["n_val"]
            images, annotations = _compose_split(
                dataset, n, tmp / split, rng, params["canvas"], tuple(params["objects_per_image"]),
                tuple(params["scale_range"]), params["mask_threshold"],
            )
            categories = [
                {"id": i + 1, "name": str(name), "supercategory": str(source.get("name", "object"))}
                for i, name in enumerate(dataset.classes)
            ]
            _write_json(tmp / "annotations" / f"instances_{split}.json", {
                "info": {"description": f"synthetic COCO-format set from {source.get('name')}", "version": "1.0"},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories,
            })
        _write_json(tmp / MANIFEST, params)
        if out.exists():  # overwrite: move the old set aside first, delete it after the swap
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
