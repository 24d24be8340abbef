"""`python -m mokd detect --checkpoint T.pt --out metrics.json`: C4 Mask R-CNN on a COCO-format set.

The exported ResNet teacher initialises a Detectron-style "C4" Mask R-CNN built from torchvision's
detection components (MaskRCNN, RPN, RoIHeads, AnchorGenerator, MultiScaleRoIAlign, transforms):

* backbone: stem + layer1..layer3 (res2-res4), one feature map with layer3's channels at stride 16
  (stem 4 x layer2 2 x layer3 2; 8 with ``stem_stride: 2``, 4 with ``stem_stride: 1``); the RPN (one
  3x3 conv, Detectron's StandardRPNHead) and anchors of all ``anchor_sizes`` x ``aspect_ratios`` live on it;
* box head: RoIAlign 14x14 -> layer4 (res5, first block stride 2 -> 7x7) -> average pool -> linear
  classifier and box regressor (Detectron's Res5ROIHeads);
* mask head: RoIAlign 14x14 of the positive / detected boxes -> the *same* res5 module (shared weights)
  -> 2x2 deconvolution (256) + ReLU -> 1x1 per-class mask logits, 14x14 masks. This is Detectron's C4
  mask head (MaskRCNNConvUpsampleHead with no convs on res5's output map). Detectron reuses the res5
  output of the positive proposals while training; torchvision's RoIHeads pools the mask RoIs again, so
  res5 runs a second time on them: more compute, identical values (BN is frozen).
* BatchNorm: every BN of the backbone and res5 becomes FrozenBatchNorm2d with the teacher's statistics,
  the standard choice for detection fine-tuning at a few images per device (the paper's MoCo-style
  setting uses SyncBN over 16 images, which a small batch cannot reproduce). ``freeze_at`` additionally
  freezes the stem (1) or stem + res2 (2, Detectron's default); 0 (default, as in MoCo's self-supervised
  transfer) fine-tunes every conv.

Training: SGD (momentum, weight decay on all trainable parameters), linear warm-up from
``warmup_factor`` x lr over ``warmup_iters``, lr x ``gamma`` at each fraction in ``steps`` of
``iterations`` (2x schedule: 180k iterations, decays at 120k and 160k), random short side in
``min_size`` = [lo, hi] (uniform integer, long side <= ``max_size``), horizontal flips. The data order
and flips follow from ``seed`` and the iteration, so a resumed run (sidecar ``<out>.ckpt``, written
atomically every ``checkpoint_every`` iterations, deleted once the metrics are written) continues the
same sequence. Evaluation: short side ``test_size``, pycocotools COCOeval "bbox" and "segm" on the val
split; AP, AP50, AP75 in percent.

Only ResNet teachers are supported; a ViT (or another CNN) checkpoint is rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mokd.config import ConfigError, config_hash, validate
from mokd.eval.common import add_common_arguments, dataset_label, load_settings, resolve_device, write_metrics
from mokd.provenance import file_sha256

if TYPE_CHECKING:  # mokd.models imports timm (and torchvision): only where a backbone is built
    from mokd.models.backbone import Backbone

PROTOCOL = "detect"
DEFAULTS: dict[str, Any] = validate({}, "detection")  # mokd/schemas/detection.yaml: keys, defaults, bounds
# Keys that change neither the trained weights nor the metrics' meaning: a resume may differ in them.
RUN_ONLY_KEYS = ("scale", "num_workers", "eval_batch_size", "max_val_images", "checkpoint_every", "log_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="one")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after N training iterations with a checkpoint, as if killed (tests)")


# --------------------------------------------------------------------------------------------- settings


def _int_pair(value: Any, key: str) -> tuple[int, int]:
    vals = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else None
    if not vals or len(vals) > 2 or not all(isinstance(v, int) and v > 0 for v in vals) or vals[0] > vals[-1]:
        raise ConfigError(f"detect setting {key!r} must be a positive int or [lo, hi] with lo <= hi, got {value!r}")
    return int(vals[0]), int(vals[-1])


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with the schema's defaults (mokd/schemas/detection.yaml); an error names its key."""
    settings = validate(settings, "detection", label="detect setting")
    _int_pair(settings["min_size"], "min_size")  # lo <= hi: beyond a schema
    return settings


def lr_factor(iteration: int, settings: dict[str, Any]) -> float:
    """Multiplier of the base lr at a 0-based iteration: linear warm-up, then steps at fractions."""
    factor = 1.0
    warmup = settings["warmup_iters"]
    if iteration < warmup:
        alpha = iteration / warmup
        factor = settings["warmup_factor"] * (1 - alpha) + alpha
    milestones = [round(f * settings["iterations"]) for f in settings["steps"]]
    return factor * settings["gamma"] ** sum(iteration >= m for m in milestones)


# ------------------------------------------------------------------------------------------------ model


def check_resnet(backbone: Backbone, path: str | Path) -> None:
    """C4 needs a ResNet's stem and four stages; anything else is a clear error naming the checkpoint."""
    arch = backbone.spec.arch
    if backbone.kind != "cnn" or not arch.startswith("resnet") or not hasattr(backbone.net, "layer4"):
        raise ValueError(
            f"{path}: the C4 Mask R-CNN detection protocol supports ResNet teachers only, but this checkpoint "
            f"holds a {backbone.kind.upper()} backbone ({arch!r}); the paper evaluates COCO with ResNet-50 teachers"
        )


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below (or at) ``module`` by a FrozenBatchNorm2d with the same statistics."""
    from torchvision.ops import FrozenBatchNorm2d

    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


class Res5BoxHead(nn.Module):
    """res5 on the 14x14 RoI features, then global average pooling: the C4 box head."""

    def __init__(self, res5: nn.Module) -> None:
        super().__init__()
        self.res5 = res5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res5(x).mean(dim=(2, 3))


def _channels(module: nn.Module, in_channels: int, size: int = 64) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, in_channels, size, size)).shape[1])


def c4_parts(backbone: Backbone, freeze_at: int = 0) -> tuple[nn.Sequential, nn.Module]:
    """(res2-res4 trunk with ``out_channels``, res5) from a teacher's ResNet, BN frozen."""
    net = backbone.net
    trunk = nn.Sequential(OrderedDict(
        (name, getattr(net, name)) for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3")
    ))
    res5 = net.layer4
    freeze_batchnorm(trunk)
    freeze_batchnorm(res5)
    frozen = {0: (), 1: ("conv1", "bn1"), 2: ("conv1", "bn1", "layer1")}[freeze_at]
    for name in frozen:
        getattr(trunk, name).requires_grad_(False)
    trunk.out_channels = _channels(trunk, 3)
    return trunk, res5


def _init_box_predictor(predictor: nn.Module) -> None:
    """Detectron's FastRCNNOutputLayers init: N(0, 0.01) scores, N(0, 0.001) deltas, zero biases."""
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)


def build_c4_mask_rcnn(backbone: Backbone, num_classes: int, settings: dict[str, Any]) -> nn.Module:
    """torchvision MaskRCNN with the C4 design above; ``num_classes`` foreground classes (+ background)."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    trunk, res5 = c4_parts(backbone, settings["freeze_at"])
    res5_channels = _channels(res5, trunk.out_channels, 14)
    anchors = AnchorGenerator(sizes=(tuple(settings["anchor_sizes"]),),
                              aspect_ratios=(tuple(settings["aspect_ratios"]),))
    box_predictor = FastRCNNPredictor(res5_channels, num_classes + 1)
    _init_box_predictor(box_predictor)
    lo, hi = _int_pair(settings["min_size"], "min_size")
    return MaskRCNN(
        trunk,
        min_size=tuple(range(lo, hi + 1)),
        max_size=settings["max_size"],
        image_mean=list(settings["mean"]),
        image_std=list(settings["std"]),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(trunk.out_channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=settings["rpn_pre_nms_top_n_train"],
        rpn_post_nms_top_n_train=settings["rpn_post_nms_top_n_train"],
        rpn_pre_nms_top_n_test=settings["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=settings["rpn_post_nms_top_n_test"],
        rpn_batch_size_per_image=settings["rpn_batch_size_per_image"],
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=0),
        box_head=Res5BoxHead(res5),
        box_predictor=box_predictor,
        box_score_thresh=settings["box_score_thresh"],
        box_detections_per_img=settings["box_detections_per_img"],
        box_batch_size_per_image=settings["box_batch_size_per_image"],
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=0),
        mask_head=res5,
        mask_predictor=MaskRCNNPredictor(res5_channels, 256, num_classes + 1),
    )


def set_image_sizes(model: nn.Module, settings: dict[str, Any], train: bool) -> None:
    """Training: a random short side in [lo, hi]; test: ``test_size`` (torchvision uses min_size[-1])."""
    lo, hi = _int_pair(settings["min_size"], "min_size")
    model.transform.min_size = tuple(range(lo, hi + 1)) if train else (settings["test_size"],)


# ------------------------------------------------------------------------------------------------- data


class BatchPlan:
    """Batches of (index, flip) for iterations [start, stop): epoch-wise permutations from (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, hflip: float, start: int, stop: int) -> None:
        self.n, self.batch_size, self.seed, self.hflip = n, batch_size, seed, hflip
        self.start, self.stop = start, stop
        self._epoch: tuple[int, np.ndarray, np.ndarray] | None = None

    def _item(self, position: int) -> tuple[int, bool]:
        epoch, offset = divmod(position, self.n)
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch = (epoch, rng.permutation(self.n), rng.random(self.n) < self.hflip)
        return int(self._epoch[1][offset]), bool(self._epoch[2][offset])

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield [self._item(it * self.batch_size + k) for k in range(self.batch_size)]


class PlannedSamples(Dataset):
    """Indexed by (index, flip): the training sample, mirrored when asked."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[torch.Tensor, dict[str, Any]]:
        from mokd.data.coco import hflip_sample

        index, flip = key
        image, target = self.dataset[index]
        return hflip_sample(image, target) if flip else (image, target)


class EvalImages(Dataset):
    """(image_id, image) of the evaluated val images."""

    def __init__(self, dataset: Any, image_ids: list[int]) -> None:
        self.dataset, self.image_ids = dataset, image_ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return self.image_ids[index], self.dataset.load_image(self.image_ids[index])


def collate(batch: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    first, second = zip(*batch)
    return list(first), list(second)


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in target.items()}


# --------------------------------------------------------------------------------------------- training


def fingerprint(checkpoint: str | Path, settings: dict[str, Any]) -> dict[str, str]:
    """What a resume must agree on: the teacher file and every setting that shapes the training."""
    shaping = {k: v for k, v in settings.items() if k not in RUN_ONLY_KEYS}
    return {"checkpoint_sha256": file_sha256(checkpoint), "settings_hash": config_hash(shaping)}


def load_resume(sidecar: Path, expected: dict[str, str]) -> dict[str, Any] | None:
    """The sidecar's state when it exists; a mismatch with this run is an error naming the file."""
    from mokd.checkpoint import CheckpointError, load_file

    if not sidecar.exists():
        return None
    state = load_file(sidecar)
    if state.get("fingerprint") != expected:
        raise CheckpointError(
            f"resume file {sidecar} belongs to another teacher or other settings ({state.get('fingerprint')} != "
            f"{expected}); delete it to start this run afresh"
        )
    return state


def _save_state(sidecar: Path, model: nn.Module, optimizer: torch.optim.Optimizer, iteration: int,
                fp: dict[str, str], stats: dict[str, Any]) -> None:
    from mokd.checkpoint import atomic_save

    atomic_save({
        "iteration": iteration, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "fingerprint": fp, "stats": stats,
    }, sidecar)


def train_detector(
    model: nn.Module, dataset: Any, settings: dict[str, Any], device: torch.device, sidecar: Path,
    fp: dict[str, str], stop_after: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) to ``iterations``; returns stats {iteration, train_time_s, loss_final, recent}.

    ``loss_final`` is the mean total loss of the last ``log_every`` iterations (``recent``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"])
    stats: dict[str, Any] = {"iteration": 0, "train_time_s": 0.0, "loss_final": float("nan"), "recent": []}
    state = load_resume(sidecar, fp)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        stats = dict(state["stats"])
        print(f"[detect] resuming from {sidecar} at iteration {stats['iteration']}", file=sys.stderr)
    total = settings["iterations"]
    stop = total if stop_after is None else min(total, stop_after)
    if stats["iteration"] >= stop:
        return stats
    plan = BatchPlan(len(dataset), settings["batch_size"], settings["seed"], settings["hflip"],
                     int(stats["iteration"]), stop)
    loader = DataLoader(PlannedSamples(dataset), batch_sampler=plan, collate_fn=collate,
                        num_workers=settings["num_workers"], pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(settings["seed"]))  # keeps the global RNG untouched
    model.train()
    set_image_sizes(model, settings, train=True)
    recent: list[float] = list(stats["recent"])
    clock = time.perf_counter()
    for it, (images, targets) in zip(range(plan.start, stop), loader):
        for group in optimizer.param_groups:
            group["lr"] = settings["lr"] * lr_factor(it, settings)
        losses = model([im.to(device, non_blocking=True) for im in images], [_to_device(t, device) for t in targets])
        loss = sum(losses.values())
        if not math.isfinite(loss.item()):
            parts = {k: v.item() for k, v in losses.items()}
            raise FloatingPointError(f"detection loss is {loss.item()} at iteration {it}: {parts}; lower 'lr'")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [loss.item()])[-settings["log_every"]:]
        done = it + 1
        if done % settings["log_every"] == 0 or done == stop:
            parts = " ".join(f"{k.removeprefix('loss_')} {v.item():.3f}" for k, v in losses.items())
            print(f"[detect] it {done}/{total} loss {np.mean(recent):.3f} ({parts}) "
                  f"lr {optimizer.param_groups[0]['lr']:.4g}", file=sys.stderr)
        if done % settings["checkpoint_every"] == 0 or done == stop:
            stats = {"iteration": done, "train_time_s": stats["train_time_s"] + time.perf_counter() - clock,
                     "loss_final": float(np.mean(recent)), "recent": recent}
            clock = time.perf_counter()
            _save_state(sidecar, model, optimizer, done, fp, stats)
    return stats


# ------------------------------------------------------------------------------------------- evaluation


def _results(output: dict[str, torch.Tensor], image_id: int, label_to_cat: dict[int, int]) -> tuple[list, list]:
    """COCO result records ("bbox" and "segm" kept apart: loadRes would overwrite masks by boxes)."""
    from pycocotools import mask as mask_utils

    boxes = output["boxes"].cpu().tolist()
    scores = output["scores"].cpu().tolist()
    cats = [label_to_cat[int(l)] for l in output["labels"].cpu().tolist()]
    masks = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(boxes) else []
    bbox, segm = [], []
    for (x1, y1, x2, y2), score, cat, rle in zip(boxes, scores, cats, rles):
        bbox.append({"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        segm.append({"image_id": image_id, "category_id": cat, "score": score,
                     "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    return bbox, segm


def coco_eval_stats(coco_gt: Any, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]) -> list[float]:
    """COCOeval's 12 summary numbers (fractions) for ``iou_type`` on ``image_ids``; no detections give 0 AP."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(sys.stderr):
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                               "categories": copy.deepcopy(coco_gt.dataset["categories"])}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


@torch.no_grad()
def evaluate_detector(model: nn.Module, dataset: Any, settings: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Predict on the val images and score them with COCOeval: AP, AP50, AP75 (percent) for bbox and segm."""
    model.eval()
    set_image_sizes(model, settings, train=False)
    image_ids = dataset.ids[: settings["max_val_images"]]
    loader = DataLoader(EvalImages(dataset, image_ids), batch_size=settings["eval_batch_size"], collate_fn=collate,
                        num_workers=settings["num_workers"])
    bbox: list[dict[str, Any]] = []
    segm: list[dict[str, Any]] = []
    for ids, images in loader:
        for image_id, output in zip(ids, model([im.to(device) for im in images])):
            b, s = _results(output, image_id, dataset.label_to_cat)
            bbox += b
            segm += s
    metrics: dict[str, float] = {}
    for iou_type, results in (("bbox", bbox), ("segm", segm)):
        stats = coco_eval_stats(dataset.coco, results, iou_type, image_ids)
        for name, value in zip(("AP", "AP50", "AP75"), stats[:3]):
            metrics[f"{name}_{iou_type}"] = 100.0 * value
    metrics["val_images"] = len(image_ids)
    metrics["detections"] = len(bbox)
    return metrics


# ---------------------------------------------------------------------------------------------- command


def sidecar_path(out: str | Path) -> Path:
    return Path(f"{out}.ckpt")


def detect(checkpoint: str | Path, settings: dict[str, Any], out: str | Path, device: torch.device,
           stop_after: int | None = None) -> dict[str, float] | None:
    """Fine-tune the teacher as a C4 Mask R-CNN and evaluate it; None when stopped early by ``stop_after``."""
    from mokd.checkpoint import load_backbone
    from mokd.data.coco import CocoInstances

    settings = check_settings(settings)
    backbone = load_backbone(checkpoint)
    check_resnet(backbone, checkpoint)
    data = settings["data"]
    train_set = CocoInstances(data["root"], data["train"], train=True)
    val_set = CocoInstances(data["root"], data["val"], train=False)
    if train_set.cat_ids != val_set.cat_ids:
        raise ValueError(f"{data['root']}: the {data['train']} and {data['val']} splits have different categories")
    if len(train_set) == 0:
        raise ValueError(f"{train_set.annotation_file} has no image with a usable (non-crowd) annotation")
    torch.manual_seed(settings["seed"])  # the new layers' init; then the RPN / RoI sampling and image sizes
    model = build_c4_mask_rcnn(backbone, train_set.num_classes, settings).to(device)
    sidecar = sidecar_path(out)
    stats = train_detector(model, train_set, settings, device, sidecar, fingerprint(checkpoint, settings), stop_after)
    if stats["iteration"] < settings["iterations"]:
        print(f"[detect] stopped at iteration {stats['iteration']}; state in {sidecar}", file=sys.stderr)
        return None
    clock = time.perf_counter()
    metrics = evaluate_detector(model, val_set, settings, device)
    metrics.update(iterations=int(stats["iteration"]), train_time_s=float(stats["train_time_s"]),
                   loss_final=float(stats["loss_final"]), eval_time_s=time.perf_counter() - clock)
    return metrics


def run(args: argparse.Namespace) -> int:
    settings = check_settings(load_settings(args))
    metrics = detect(args.checkpoint, settings, args.out, resolve_device(args.device), args.stop_after)
    if metrics is None:
        return 0
    write_metrics(args.out, PROTOCOL, metrics, [args.checkpoint], settings,
                  dataset_label({**settings["data"], "name": "coco"}))
    sidecar_path(args.out).unlink(missing_ok=True)
    print("[detect] " + " ".join(f"{k} {metrics[k]:.1f}" for k in metrics if k.startswith("AP")), file=sys.stderr)
    return 0
