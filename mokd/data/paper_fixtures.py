"""Small datasets in the paper's own formats, written from real images (Fashion-MNIST), so that the paper
scale can be rehearsed end to end (config/rehearsal.yaml) and its loaders tested on the files a user
brings:

    python -m mokd prepare-data paper-fixtures --root data/paper_fixtures --fashion-root data/fashion_mnist

Under `root`:
- `imagenet/train/<wnid>/<wnid>_<k>.JPEG`, `imagenet/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG`: the
  layout the paper's ImageFolder loaders read (ILSVRC-2012's val archive is flat: it must be arranged
  in class folders, mokd/data/imagefolder.py says how). The class folders are the 100 wnids of
  config/imagenet100_classes.txt and the first `extra_classes` ImageNet-1k wnids not among them, so
  that the ImageNet-100 subset selects real classes out of a larger set. Images of varying aspect ratio.
- `imagenet/splits/1percent.txt`, `10percent.txt`: SimCLR's semi-supervised split files (one
  `<wnid>_<k>.JPEG` per line; 2 and 3 images per class with images here).
- `cifar/cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta) and
  `cifar/cifar-100-python/` (train, test, meta): CIFAR's python pickles as distributed.
- `coco/{train2017,val2017}/<12 digits>.jpg` and `coco/annotations/instances_{train,val}2017.json`:
  COCO 2017's layout, with polygon masks, compressed-RLE masks and crowd regions (iscrowd 1,
  uncompressed RLE), from mokd/data/coco_synthetic.py's canvases.

Every class of each set exists (its label space is the real one: 110 ImageNet folders, CIFAR-100's 100
classes), and the first `classes_with_images` (10) of each hold images: the work of a rehearsal stays
small. Fashion-MNIST class c mod 10 stands in for class c (never the same image twice): the files are
real images in the real formats, not a learnable ImageNet. `fixtures.json` records the parameters; the same call on an existing set with the
same parameters does nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MANIFEST = "fixtures.json"
# The first ImageNet-1k classes (tench, goldfish, great white shark, tiger shark, hammerhead, electric
# ray, stingray, cock, hen, ostrich): none is in the ImageNet-100 list.
IMAGENET_EXTRA_WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331",
                        "n01498041", "n01514668", "n01514859", "n01518878")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_NAMES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter
palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose
sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table
tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman
worm""".split())
CIFAR100_COARSE_NAMES = tuple("""aquatic_mammals fish flowers food_containers fruit_and_vegetables
household_electrical_devices household_furniture insects large_carnivores large_man-made_outdoor_things
large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people
reptiles small_mammals trees vehicles_1 vehicles_2""".split())
# SimCLR's split files: images per populated class (at least 2: the lr search holds out one per class)
SEMI_SPLITS = {"1percent.txt": 2, "10percent.txt": 3}


def read_class_list(path: str | Path) -> list[str]:
    """Class names of a class-list file, one per line; blank lines and `#` comments skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


class _Source:
    """Fashion-MNIST images of one split, handed out class by class, each image once."""

    def __init__(self, fashion_root: Path, split: str) -> None:
        from mokd.data import build_dataset

        self.data = build_dataset({"name": "fashion_mnist", "root": str(fashion_root)}, split)
        targets = np.asarray(self.data.targets)
        self.by_class = [list(np.flatnonzero(targets == c)) for c in range(10)]
        self.next = [0] * 10

    def take(self, fashion_class: int) -> Image.Image:
        queue, i = self.by_class[fashion_class], self.next[fashion_class]
        if i >= len(queue):
            raise ValueError(f"Fashion-MNIST class {fashion_class} has only {len(queue)} images for the fixtures")
        self.next[fashion_class] += 1
        image, _ = self.data[int(queue[i])]
        return image.convert("RGB")


def _imagenet(out: Path, fashion_root: Path, wnids: Sequence[str], populated: int, train_per_class: int,
              val_per_class: int, size: int) -> None:
    """ImageNet's train/ and val/ folders (a folder per wnid, images in the first `populated`) and
    SimCLR's split files."""
    val_number = 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        source = _Source(fashion_root, "train" if split == "train" else "val")
        for c, wnid in enumerate(wnids):
            folder = out / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class if c < populated else 0):
                # ImageNet's images vary in shape: alternate landscape, square and portrait
                width, height = [(size * 4 // 3, size), (size, size), (size, size * 4 // 3)][(c + k) % 3]
                image = source.take(c % 10).resize((width, height), Image.BICUBIC)
                if split == "train":
                    name = f"{wnid}_{k + 1}.JPEG"
                else:
                    val_number += 1
                    name = f"ILSVRC2012_val_{val_number:08d}.JPEG"
                image.save(folder / name, format="JPEG", quality=90)
    splits = out / "splits"
    splits.mkdir()
    for name, per_class in SEMI_SPLITS.items():
        take = min(per_class, train_per_class)
        lines = [f"{wnid}_{k + 1}.JPEG" for wnid in wnids[:populated] for k in range(take)]
        (splits / name).write_text("".join(ln + "\n" for ln in lines))


def _cifar(out: Path, fashion_root: Path, populated: int, train_per_class: int, test_per_class: int) -> None:
    """CIFAR-10 and CIFAR-100 as their python pickles (mokd.data.cifar.write_cifar_like), images in
    `populated` evenly spaced classes of each (every class of CIFAR-10 when it has no more)."""
    from mokd.data.cifar import write_cifar_like

    for name, names in (("cifar10", CIFAR10_NAMES), ("cifar100", CIFAR100_NAMES)):
        step = max(1, len(names) // populated)
        classes = list(range(0, len(names), step))[:populated]
        for train, per_class in ((True, train_per_class), (False, test_per_class)):
            source = _Source(fashion_root, "train" if train else "val")
            labels = [c for c in classes for _ in range(per_class)]
            images = np.stack([np.asarray(source.take(c % 10).resize((32, 32), Image.BICUBIC)) for c in labels])
            coarse = dict(coarse_labels=[c // 5 for c in labels], coarse_label_names=CIFAR100_COARSE_NAMES) \
                if name == "cifar100" else {}
            write_cifar_like(out, name, images, labels, train, names, **coarse)


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (flat x, y lists in pixel coordinates) of a binary mask's outlines."""
    import contourpy

    padded = np.pad(mask.astype(np.float64), 1)
    lines = contourpy.contour_generator(z=padded, line_type="Separate").lines(0.5)
    # contour coordinates are pixel centres of the padded grid: shift to COCO's pixel-corner frame
    return [[float(v) for v in (line - 1 + 0.5).ravel()] for line in lines if len(line) >= 3]


def _coco(out: Path, fashion_root: Path, n_train: int, n_val: int, canvas: int, seed: int) -> None:
    """COCO 2017's layout from synthetic canvases: JPEG images named by id; every third annotation a
    polygon, every fifth (of the others) a crowd region in uncompressed RLE, the rest compressed RLE."""
    from pycocotools import mask as mask_utils

    from mokd.data.coco_synthetic import build_synthetic_coco

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        source = {"name": "fashion_mnist", "root": str(fashion_root)}
        synthetic = build_synthetic_coco(Path(tmp) / "coco", source, n_train, n_val, canvas=canvas,
                                         objects_per_image=(1, 3), seed=seed)
        for split in ("train2017", "val2017"):
            record = json.loads((synthetic / "annotations" / f"instances_{split}.json").read_text())
            (out / split).mkdir(parents=True)
            for image in record["images"]:
                name = f"{image['id']:012d}.jpg"
                Image.open(synthetic / split / image["file_name"]).convert("RGB").save(out / split / name, quality=90)
                image["file_name"] = name
            for i, ann in enumerate(record["annotations"]):
                ann.pop("mokd_source", None)
                mask = mask_utils.decode(ann["segmentation"])
                polygons = mask_polygons(mask) if i % 3 == 0 else []
                if polygons:
                    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, *mask.shape))
                    ann["segmentation"] = polygons
                elif i % 5 == 1:
                    rle = mask_utils.encode(np.asfortranarray(mask))
                    ann["segmentation"] = {"size": list(mask.shape), "counts": _uncompressed_counts(mask)}
                    ann["iscrowd"] = 1
                else:
                    continue
                ann["area"] = float(mask_utils.area(rle))
                ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
            record["info"] = {"description": "COCO 2017-format fixture from Fashion-MNIST canvases", "version": "1.0",
                              "year": 2017}
            (out / "annotations").mkdir(exist_ok=True)
            (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(record))


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of 0s."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] == 1 else counts


def build_paper_fixtures(
    root: str | Path,
    fashion_root: str | Path,
    class_list: str | Path = "config/imagenet100_classes.txt",
    extra_classes: int = 10,
    classes_with_images: int = 10,
    train_per_class: int = 3,
    val_per_class: int = 4,
    image_size: int = 96,
    cifar_train_per_class: int = 2,
    cifar_test_per_class: int = 1,
    coco_train: int = 16,
    coco_val: int = 8,
    coco_canvas: int = 160,
    seed: int = 0,
) -> Path:
    """Write the fixtures (module docstring) under `root`, atomically; return `root`.

    Every class of a set exists (a folder per wnid; CIFAR-100's 100 names), so each label space is the
    real one, and the first `classes_with_images` classes of each hold images (`*_per_class` each):
    the rehearsal's work stays small without changing what the protocols compute."""
    root, fashion_root = Path(root), Path(fashion_root)
    if not 0 <= extra_classes <= len(IMAGENET_EXTRA_WNIDS):
        raise ValueError(f"extra_classes must be in [0, {len(IMAGENET_EXTRA_WNIDS)}], got {extra_classes}")
    wnids = read_class_list(class_list)
    wnids += [w for w in IMAGENET_EXTRA_WNIDS if w not in wnids][:extra_classes]
    if not 1 <= classes_with_images <= len(CIFAR10_NAMES):
        raise ValueError(f"classes_with_images must be in [1, {len(CIFAR10_NAMES)}], got {classes_with_images}")
    params = {"class_list": [*wnids], "classes_with_images": classes_with_images, "train_per_class": train_per_class,
              "val_per_class": val_per_class, "image_size": image_size, "cifar_train_per_class": cifar_train_per_class,
              "cifar_test_per_class": cifar_test_per_class, "coco_train": coco_train, "coco_val": coco_val,
              "coco_canvas": coco_canvas, "seed": seed}
    manifest = root / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == params:
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and holds something else than these fixtures; remove it or choose another --root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _imagenet(tmp / "imagenet", fashion_root, wnids, classes_with_images, train_per_class, val_per_class, image_size)
        _cifar(tmp / "cifar", fashion_root, classes_with_images, cifar_train_per_class, cifar_test_per_class)
        _coco(tmp / "coco", fashion_root, coco_train, coco_val, coco_canvas, seed)
        (tmp / MANIFEST).write_text(json.dumps(params, indent=1))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; data is meant to be shared
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
