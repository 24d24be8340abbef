"""`python -m mokd linear`: linear probe on the frozen teacher backbone (docs/METHOD_NOTES.md §7).

The feature is the pooled one for CNNs and, for ViTs, the [CLS] tokens of the last 4 blocks
concatenated (DINO). A linear layer (weight N(0, 0.01^2), bias 0) is trained with SGD (momentum 0.9,
no weight decay), lr = base_lr * batch_size / 256, on RandomResizedCrop + flip views; the val split
(resize + centre crop) is evaluated after epochs 1, 1 + val_every, ... and the last.

The defaults are the authors' run (their eval_linear.py with the README's flags, which produced the
paper's numbers): base lr 0.01 (ResNet) / 0.001 (ViT) per 256 images — the supplementary's "0.08 and
0.008" are these rates at batch 2048 —, no warm-up (the supplementary says 10 epochs: warmup_epochs
10), a cosine stepped once per epoch (schedule_unit epoch; `iteration` changes it every step), a
bilinear RandomResizedCrop (train_interpolation), an evaluation every 5 epochs and the best of them
reported (report best; `last` reports the last epoch). The metrics hold both: top1/top5 (what `report`
picks), top1_last/top5_last, top1_best, best_epoch and every evaluation.

Settings (defaults = the authors'): data_train, data_val (dataset cfgs, required), image_size 224,
mean/std (ImageNet), batch_size 2048, epochs 100, warmup_epochs 0, lr {"cnn": 0.01, "vit": 0.001}
(a number, or a base lr per backbone kind, per 256 images), schedule_unit epoch, train_interpolation
bilinear, val_every 5, report best, seed 0, eval_batch_size 256 (feature extraction), num_workers 4,
feature_cache (default `features/` next to --out), scale, expected_backbone, and precompute_features
(false). With precompute_features true the train features are extracted once with the *eval* transform
(no augmentation) and cached, and the head trains on those tensors: epochs then cost a matrix product
instead of a backbone pass, a large speed-up at the small CPU scale, at the price of the augmentation
the paper uses.

Resumable: `<out>.ckpt` (head, optimizer, evaluations) is written atomically after each epoch and
resumed when the checkpoint file and the training settings are the same.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from mokd.config import ConfigError, validate
from mokd.eval.classifier import (
    FeatureClassifier,
    SGDConfig,
    evaluate,
    linear_head,
    resume_key,
    scaled_lr,
    train_classifier,
)
from mokd.eval.common import add_common_arguments, run_protocol
from mokd.eval.features import (
    cached_features,
    default_cache_dir,
    eval_transform_desc,
    load_teacher,
    probe_mode,
    require_settings,
)

DEFAULTS: dict[str, Any] = validate({}, "linear")  # mokd/schemas/linear.yaml: keys, defaults, bounds


def base_lr_for(lr: float | Mapping[str, float], kind: str) -> float:
    """The `lr` setting for a backbone kind: a number, or a mapping {"cnn": .., "vit": ..}."""
    if isinstance(lr, Mapping):
        if kind not in lr:
            raise ConfigError(f"setting 'lr' has no entry for backbone kind {kind!r} (got keys {sorted(lr)})")
        return float(lr[kind])
    return float(lr)


def ckpt_path_for(out: str | Path) -> Path:
    """The resume checkpoint of a metrics file: `<out>.ckpt`."""
    return Path(f"{out}.ckpt")


def linear_probe(
    checkpoint: str | Path,
    settings: dict[str, Any],
    out: str | Path,
    device: torch.device | str = "cpu",
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train the linear head (resuming `<out>.ckpt`), then return the val metrics (percent)."""
    from mokd.data import build_dataset, train_classification_transform

    require_settings(settings, ["data_train", "data_val"], "linear")
    device = torch.device(device)
    backbone = load_teacher(checkpoint, settings)
    mode = probe_mode(backbone.kind)
    size, mean, std = int(settings["image_size"]), settings["mean"], settings["std"]
    common = dict(
        cache_dir=default_cache_dir(out, settings["feature_cache"]),
        batch_size=int(settings["eval_batch_size"]),
        device=device,
        num_workers=int(settings["num_workers"]),
        backbone=backbone,
    )
    desc = eval_transform_desc(size, mean, std)
    val_f, val_y = cached_features(checkpoint, settings["data_val"], "val", desc, mode, **common)
    train_set: Dataset
    if settings["precompute_features"]:
        train_f, train_y = cached_features(checkpoint, settings["data_train"], "train", desc, mode, **common)
        train_set = TensorDataset(train_f, train_y)
        num_classes = int(max(train_y.max(), val_y.max())) + 1
    else:
        transform = train_classification_transform(size, mean, std, interpolation=settings["train_interpolation"])
        train_set = build_dataset(settings["data_train"], "train", transform)
        num_classes = len(train_set.classes)  # type: ignore[attr-defined]

    torch.manual_seed(int(settings["seed"]))
    head = linear_head(val_f.shape[1], num_classes)
    model = head if settings["precompute_features"] else FeatureClassifier(backbone, head, mode, frozen=True)
    batch = int(settings["batch_size"])
    base_lr = base_lr_for(settings["lr"], backbone.kind)
    cfg = SGDConfig(
        epochs=int(settings["epochs"]), batch_size=batch, lr=scaled_lr(base_lr, batch),
        warmup_epochs=float(settings["warmup_epochs"]), seed=int(settings["seed"]),
        schedule_unit=settings["schedule_unit"],
    )
    val_set = TensorDataset(val_f, val_y)
    run = train_classifier(
        model, train_set, cfg, device, ckpt_path=ckpt_path_for(out), ckpt_key=resume_key(checkpoint, settings),
        state_module=head, stop_after_epoch=stop_after_epoch, num_workers=int(settings["num_workers"]),
        desc="linear", evaluator=lambda: evaluate(head, val_set, int(settings["eval_batch_size"]), device),
        evaluate_every=int(settings["val_every"]),
    )
    return {**reported(run.evaluations, settings["report"]), "epochs": run.epochs_done, "lr": cfg.lr,
            "base_lr": base_lr, "last4cls": int(mode == "last4cls"), "feature_dim": int(val_f.shape[1])}


REPORTS = ("best", "last")


def reported(evaluations: list[dict[str, Any]], report: str) -> dict[str, Any]:
    """top1/top5 as `report` says (the best evaluation's, as the authors, or the last epoch's), both
    recorded, and every evaluation made."""
    if report not in REPORTS:
        raise ConfigError(f"setting 'report' must be one of {list(REPORTS)}, got {report!r}")
    if not evaluations:
        raise ConfigError("the linear probe made no evaluation (setting 'val_every' must be at least 1)")
    last = evaluations[-1]
    best = max(evaluations, key=lambda e: e["top1"])  # the first of equals, as the authors' running max
    chosen = best if report == "best" else last
    return {"top1": chosen["top1"], "top5": chosen["top5"], "report": report,
            "top1_last": last["top1"], "top5_last": last["top5"], "top1_best": best["top1"],
            "best_epoch": best["epoch"], "evaluations": evaluations}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="one")


def run(args: argparse.Namespace) -> int:
    return run_protocol(args, "linear", "linear", linear_probe)
