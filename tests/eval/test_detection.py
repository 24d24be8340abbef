"""COCO protocol: the synthetic COCO-format builder, the COCO reader and the C4 Mask R-CNN command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from mokd.checkpoint import export_teacher
from mokd.cli import main as cli_main
from mokd.data import build_dataset
from mokd.data.coco import CocoInstances, hflip_sample
from mokd.data.coco_synthetic import build_synthetic_coco
from mokd.eval import detection
from mokd.models.backbone import build_backbone

TINY_RESNET = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}, "stem_stride": 1}
TINY_VIT = {"arch": "vit_tiny_patch16_224",
            "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}}
CANVAS = 64
SMALL = {
    "scale": "test", "iterations": 4, "batch_size": 2, "lr": 0.01, "warmup_iters": 2, "min_size": [64, 64],
    "test_size": 64, "max_size": 107, "anchor_sizes": [16, 32, 64], "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 30,
    "box_batch_size_per_image": 16, "box_detections_per_img": 10, "box_score_thresh": 0.0, "num_workers": 0, "eval_batch_size": 4,
    "checkpoint_every": 1, "log_every": 1,
}
AP_KEYS = ("AP_bbox", "AP50_bbox", "AP75_bbox", "AP_segm", "AP50_segm", "AP75_segm")


@pytest.fixture(scope="module")
def source(fashion_root: Path) -> dict:
    return {"name": "fashion_mnist", "root": str(fashion_root)}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory, source: dict) -> Path:
    out = tmp_path_factory.mktemp("coco") / "synthetic"
    return build_synthetic_coco(out, source, n_train=10, n_val=4, canvas=CANVAS, objects_per_image=(1, 3), seed=0)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teachers") / "teacher_r18.pt"
    export_teacher(path, "r18", build_backbone(TINY_RESNET), None, {"test": True})
    return path


# ------------------------------------------------------------------------------------- synthetic builder


def test_synthetic_set_is_valid_coco_with_masks_of_the_object_pixels(coco_root: Path, source: dict) -> None:
    assert (coco_root / "synthetic.json").is_file()
    for split, src_split, n_images in (("train2017", "train", 10), ("val2017", "val", 4)):
        coco = COCO(str(coco_root / "annotations" / f"instances_{split}.json"))
        objects = build_dataset(source, src_split)
        assert [c["id"] for c in coco.dataset["categories"]] == list(range(1, 11))
        assert [c["name"] for c in coco.dataset["categories"]] == list(objects.classes)
        assert len(coco.getImgIds()) == n_images
        for image_id in coco.getImgIds():
            info = coco.imgs[image_id]
            picture = np.asarray(Image.open(coco_root / split / info["file_name"]))
            assert picture.shape == (CANVAS, CANVAS, 3) and (info["width"], info["height"]) == (CANVAS, CANVAS)
            anns = coco.imgToAnns[image_id]
            assert 1 <= len(anns) <= 3
            union = np.zeros((CANVAS, CANVAS), dtype=int)
            for ann in anns:
                mask = coco.annToMask(ann)
                union += mask
                src = ann["mokd_source"]
                image, label = objects[src["index"]]
                size, x, y = src["size"], src["x"], src["y"]
                assert 28 <= size <= 56 and ann["category_id"] == label + 1 and ann["iscrowd"] == 0
                # the mask is the scaled object's pixels brighter than the threshold, at (x, y)
                grey = np.asarray(image.convert("L").resize((size, size), Image.BILINEAR))
                expected = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
                expected[y : y + size, x : x + size] = grey > 32
                np.testing.assert_array_equal(mask, expected)
                # ... and those pixels hold the object's grey values in all three channels
                inside = mask.astype(bool)
                window = np.zeros((CANVAS, CANVAS), dtype=int)
                window[y : y + size, x : x + size] = grey
                for c in range(3):
                    np.testing.assert_array_equal(picture[..., c][inside], window[inside])
                rows, cols = np.nonzero(mask)
                tight = [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
                assert ann["bbox"] == [float(v) for v in tight]
                assert ann["area"] == float(mask.sum())
            assert union.max() <= 1  # objects do not overlap


def test_synthetic_build_is_deterministic_and_reused(coco_root: Path, source: dict, tmp_path: Path) -> None:
    again = build_synthetic_coco(tmp_path / "again", source, n_train=10, n_val=4, canvas=CANVAS,
                                 objects_per_image=(1, 3), seed=0)
    for rel in ("annotations/instances_train2017.json", "annotations/instances_val2017.json",
                "train2017/000000000003.png", "val2017/000000000004.png"):
        assert (again / rel).read_bytes() == (coco_root / rel).read_bytes(), rel
    stamp = (again / "annotations" / "instances_val2017.json").stat().st_mtime_ns
    build_synthetic_coco(again, source, n_train=10, n_val=4, canvas=CANVAS, objects_per_image=(1, 3), seed=0)
    assert (again / "annotations" / "instances_val2017.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="again"):
        build_synthetic_coco(again, source, n_train=10, n_val=4, canvas=CANVAS, seed=1)
    other = build_synthetic_coco(tmp_path / "other", source, n_train=10, n_val=4, canvas=CANVAS, seed=1)
    assert (other / "train2017/000000000003.png").read_bytes() != (coco_root / "train2017/000000000003.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]


def test_interrupted_synthetic_build_leaves_nothing(source: dict, tmp_path: Path, monkeypatch) -> None:
    from mokd.data import coco_synthetic

    real_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(coco_synthetic.Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        build_synthetic_coco(tmp_path / "set", source, n_train=6, n_val=2, canvas=CANVAS)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- reader


def test_coco_reader_targets_match_the_annotations(coco_root: Path) -> None:
    data = CocoInstances(coco_root, "train2017", train=True)
    coco = COCO(str(coco_root / "annotations" / "instances_train2017.json"))
    assert len(data) == 10 and data.num_classes == 10 and data.label_to_cat[3] == 3
    image, target = data[2]
    image_id = data.ids[2]
    anns = coco.imgToAnns[image_id]
    assert image.shape == (3, CANVAS, CANVAS) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["image_id"] == image_id
    x, y, w, h = anns[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert target["labels"].tolist() == [a["category_id"] for a in anns]  # ids 1..10 map to labels 1..10
    assert target["masks"].dtype == torch.uint8
    np.testing.assert_array_equal(target["masks"][0].numpy(), coco.annToMask(anns[0]))

    flipped_image, flipped = hflip_sample(image, target)
    assert flipped["boxes"][0].tolist() == [CANVAS - (x + w), y, CANVAS - x, y + h]
    assert torch.equal(flipped_image[:, :, 0], image[:, :, -1])
    assert torch.equal(flipped["masks"][:, :, 0], target["masks"][:, :, -1])


def test_images_without_annotations_are_skipped_for_training(coco_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").symlink_to(coco_root / "val2017")
    gt = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    first = gt["images"][0]["id"]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != first]
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(gt))
    assert first not in CocoInstances(root, "val2017", train=True).ids
    assert first in CocoInstances(root, "val2017", train=False).ids


def test_missing_coco_names_the_path_and_the_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json.*cocodataset\.org"):
        CocoInstances(tmp_path / "coco", "train2017")


# ------------------------------------------------------------------------------------ model and schedule


def test_c4_model_reuses_the_teacher(teacher: Path) -> None:
    from torchvision.ops import FrozenBatchNorm2d

    from mokd.checkpoint import load_backbone

    original = load_backbone(teacher)
    settings = {**detection.DEFAULTS, **SMALL, "freeze_at": 2}
    model = detection.build_c4_mask_rcnn(load_backbone(teacher), 10, settings)
    trunk, heads = model.backbone, model.roi_heads
    assert trunk.out_channels == 32  # layer3 of channels [8, 16, 32, 64]
    assert heads.box_head.res5 is heads.mask_head  # one res5, as in Detectron's C4
    assert heads.box_predictor.cls_score.out_features == 11 and heads.box_predictor.cls_score.in_features == 64
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 11
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    bn = trunk.layer2[0].bn1
    assert isinstance(bn, FrozenBatchNorm2d)
    assert torch.equal(bn.running_var, original.net.layer2[0].bn1.running_var)
    assert torch.equal(trunk.layer3[1].conv2.weight, original.net.layer3[1].conv2.weight)
    assert not trunk.conv1.weight.requires_grad and not trunk.layer1[0].conv1.weight.requires_grad
    assert trunk.layer2[0].conv1.weight.requires_grad
    with torch.no_grad():  # C4 features at stride 4 with the stride-1 stem (layer2, layer3 halve)
        assert trunk(torch.zeros(1, 3, 64, 64)).shape == (1, 32, 16, 16)
        assert heads.box_head(torch.zeros(5, 32, 14, 14)).shape == (5, 64)


def test_lr_schedule_warmup_and_steps() -> None:
    s = {**detection.DEFAULTS, "iterations": 90, "warmup_iters": 10, "warmup_factor": 0.001}
    assert detection.lr_factor(0, s) == pytest.approx(0.001)
    assert detection.lr_factor(5, s) == pytest.approx(0.001 * 0.5 + 0.5)
    assert [detection.lr_factor(i, s) for i in (10, 59, 60, 79, 80, 89)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    paper = detection.DEFAULTS  # 2x schedule: decays at 120k and 160k of 180k
    assert [detection.lr_factor(i, paper) for i in (119999, 120000, 159999, 160000)] == pytest.approx(
        [1, 0.1, 0.1, 0.01])


def test_batch_plan_covers_epochs_and_resumes_identically() -> None:
    full = list(detection.BatchPlan(7, 3, seed=1, hflip=0.5, start=0, stop=7))
    flat = [i for batch in full for i, _ in batch]
    for epoch in range(3):
        assert sorted(flat[epoch * 7 : epoch * 7 + 7]) == list(range(7))
    assert list(detection.BatchPlan(7, 3, seed=1, hflip=0.5, start=4, stop=7)) == full[4:]
    assert {f for batch in full for _, f in batch} == {True, False}


# ------------------------------------------------------------------------------------------- evaluation


def test_ground_truth_as_detections_scores_100_ap(coco_root: Path) -> None:
    val = CocoInstances(coco_root, "val2017")
    bbox, segm = [], []
    for index, image_id in enumerate(val.ids):
        _, target = val[index]
        output = {"boxes": target["boxes"], "labels": target["labels"], "scores": torch.ones(len(target["labels"])),
                  "masks": target["masks"][:, None].float()}
        b, s = detection._results(output, image_id, val.label_to_cat)
        bbox += b
        segm += s
    for iou_type, results in (("bbox", bbox), ("segm", segm)):
        stats = detection.coco_eval_stats(val.coco, results, iou_type, val.ids)
        assert stats[:3] == pytest.approx([1.0, 1.0, 1.0])
        assert detection.coco_eval_stats(val.coco, [], iou_type, val.ids)[:3] == [0.0, 0.0, 0.0]


def _detect(teacher: Path, coco_root: Path, out: Path, *extra: str) -> int:
    settings = {**SMALL, "data": {"root": str(coco_root)}}
    return cli_main(["detect", "--checkpoint", str(teacher), "--device", "cpu", "--out", str(out),
                     "--settings", json.dumps(settings), *extra])


def test_detection_trains_evaluates_and_resumes(teacher: Path, coco_root: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight.json"
    assert _detect(teacher, coco_root, straight) == 0
    record = json.loads(straight.read_text())
    metrics = record["metrics"]
    assert record["protocol"] == "detect" and metrics["iterations"] == 4 and metrics["val_images"] == 4
    assert metrics["detections"] > 0  # COCOeval scored real predictions (score threshold 0)
    for key in AP_KEYS:
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 100.0
    assert not Path(f"{straight}.ckpt").exists()

    resumed = tmp_path / "resumed.json"
    assert _detect(teacher, coco_root, resumed, "--stop-after", "2") == 0
    assert Path(f"{resumed}.ckpt").is_file() and not resumed.exists()
    assert _detect(teacher, coco_root, resumed) == 0
    again = json.loads(resumed.read_text())["metrics"]
    for key in (*AP_KEYS, "detections", "loss_final"):
        assert again[key] == pytest.approx(metrics[key]), key


def test_resume_with_other_settings_is_refused(teacher: Path, coco_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.json"
    assert _detect(teacher, coco_root, out, "--stop-after", "1") == 0
    assert _detect(teacher, coco_root, out, "lr=0.05") == 4  # a checkpoint error (mokd/cli.py's exit codes)
    assert "delete it" in capsys.readouterr().err


def test_vit_checkpoint_is_rejected(tmp_path: Path, coco_root: Path, capsys) -> None:
    vit = tmp_path / "teacher_vit.pt"
    export_teacher(vit, "vit", build_backbone(TINY_VIT), None, {})
    assert _detect(vit, coco_root, tmp_path / "m.json") == 2
    err = capsys.readouterr().err
    assert "ResNet teachers only" in err and "VIT" in err and str(vit) in err
    assert not (tmp_path / "m.json").exists()
