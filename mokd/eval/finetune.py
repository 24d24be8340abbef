"""`python -m mokd finetune`: fine-tune the whole teacher (backbone + new linear head), docs/METHOD_NOTES.md §7.

Used for the semi-supervised protocol (1 % / 10 % labelled subsets; the paper: batch 1024, 60 / 30
epochs, 5 warm-up epochs) and for CIFAR transfer (100 epochs, 10 warm-up epochs): both are this
command with other settings. SGD (momentum 0.9, `weight_decay`), lr = base lr * batch_size / 256,
linear warm-up then cosine to 0, RandomResizedCrop + flip training views, resize + centre-crop eval.

Labelled subset (`subset`): {"file_list": path} uses a list file as it is (SimCLR's ImageNet split
files work unchanged; CIFAR / Fashion-MNIST lists hold sample indices), or
{"fraction": 0.01, "seed": 0, "save_to": path} draws a seeded class-balanced subset and writes it to
`save_to` (default `<out>.subset.txt`); an existing `save_to` file is reused, never redrawn.

Learning-rate search (`lrs`: [..]): each lr trains on the subset minus a class-balanced held-out part
(`holdout_fraction` of it, seeded by `seed`) and is scored by held-out top-1; the best lr is then
retrained on the whole subset and only that model is evaluated on the val (test) split. The test split
is never read during the search. Without `lrs`, `lr` is used directly.

Resumable per phase: every finished trial (and the final result) is recorded in `<out>.search.json`
and not rerun (adding lrs to `lrs` keeps the finished trials); a running phase resumes from its epoch checkpoint (`<out>.trial-<lr>.ckpt` or
`<out>.ckpt`, deleted once the phase is recorded).

Settings (defaults): data_train, data_val (required), image_size 224, mean/std (ImageNet),
batch_size 1024, epochs 60, warmup_epochs 5, lr 0.05, lrs null, weight_decay 0.0, subset null,
holdout_fraction 0.1, seed 0, eval_batch_size 256, num_workers 4, scale, expected_backbone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from mokd.config import ConfigError, config_hash, validate
from mokd.data import class_balanced_subset, write_file_list
from mokd.eval.classifier import (
    DivergedError,
    FeatureClassifier,
    SGDConfig,
    evaluate,
    linear_head,
    resume_key,
    scaled_lr,
    train_classifier,
)
from mokd.eval.common import add_common_arguments, dataset_label, run_protocol, warn_few_classes
from mokd.eval.features import load_teacher, require_settings
from mokd.provenance import file_sha256

DEFAULTS: dict[str, Any] = validate({}, "finetune")  # mokd/schemas/finetune.yaml: keys, defaults, bounds
SUBSET_KEYS = ("file_list", "fraction", "seed", "save_to")


def subset_data_cfg(data_train: Mapping[str, Any], subset: Mapping[str, Any] | None, out: str | Path) -> dict[str, Any]:
    """The train dataset cfg restricted to the labelled subset (a list file given, or drawn and saved)."""
    from mokd.data import build_dataset, file_list_entries

    cfg = dict(data_train)
    if not subset:
        return cfg
    unknown = sorted(set(subset) - set(SUBSET_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in setting 'subset'; allowed: {list(SUBSET_KEYS)}")
    if cfg.get("file_list") is not None:
        raise ConfigError("setting 'subset' cannot be combined with a 'file_list' in data_train")
    if "file_list" in subset:
        path = Path(subset["file_list"])
        if not path.is_file():
            raise FileNotFoundError(f"subset file list not found: {path} (setting subset.file_list)")
    elif "fraction" in subset:
        # The default file is named by what defines the subset, so another fraction, seed or
        # dataset never reuses a stale list.
        key = config_hash({"data": cfg, "fraction": subset["fraction"], "seed": subset.get("seed", 0)})
        path = Path(subset.get("save_to") or f"{out}.subset-{key}.txt")
        if path.is_file():
            print(f"finetune: reusing the subset {path}", file=sys.stderr)
        else:
            full = build_dataset(cfg, "train")
            labels = full.targets  # type: ignore[attr-defined]
            indices = class_balanced_subset(labels, float(subset["fraction"]), int(subset.get("seed", 0)))
            write_file_list(path, file_list_entries(full, indices))
            print(f"finetune: wrote a {len(indices)}-sample subset to {path}", file=sys.stderr)
    else:
        raise ConfigError("setting 'subset' needs 'file_list' or 'fraction'")
    cfg["file_list"] = str(path)
    return cfg


def split_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) positions: a seeded class-balanced `fraction` is held out, the rest trains."""
    held = class_balanced_subset(labels, fraction, seed)
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], held


def run_trial(
    checkpoint: str | Path,
    settings: Mapping[str, Any],
    train_set: Dataset,
    eval_set: Dataset,
    base_lr: float,
    num_classes: int,
    device: torch.device,
    ckpt_path: Path,
    ckpt_key: str,
    phase: str,
) -> dict[str, float]:
    """Fine-tune a fresh copy of the teacher + new head at `base_lr`, then evaluate it on `eval_set`."""
    from mokd.checkpoint import load_backbone

    backbone = load_backbone(checkpoint)
    torch.manual_seed(int(settings["seed"]))
    model = FeatureClassifier(backbone, linear_head(backbone.feature_dim, num_classes), "pooled", frozen=False)
    batch = int(settings["batch_size"])
    cfg = SGDConfig(
        epochs=int(settings["epochs"]), batch_size=batch, lr=scaled_lr(base_lr, batch),
        warmup_epochs=float(settings["warmup_epochs"]), weight_decay=float(settings["weight_decay"]),
        seed=int(settings["seed"]),
    )
    train_classifier(
        model, train_set, cfg, device, ckpt_path=ckpt_path, ckpt_key=ckpt_key,
        num_workers=int(settings["num_workers"]), desc=f"finetune {phase}",
    )
    return evaluate(model, eval_set, int(settings["eval_batch_size"]), device, int(settings["num_workers"]))


def _lr_key(lr: float) -> str:
    return repr(float(lr))


class Sidecar:
    """`<out>.search.json`: finished trials and the final result, valid for one resume key."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"key": key, "trials": {}, "final": None}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = {}
            if old.get("key") == key:
                self.data = old
            else:
                print(f"finetune: {path} is for other settings; starting over", file=sys.stderr)

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)


def lr_search(
    checkpoint: str | Path,
    settings: Mapping[str, Any],
    labelled_train: Dataset,
    labelled_eval: Dataset,
    num_classes: int,
    device: torch.device,
    out: str | Path,
    sidecar: Sidecar,
) -> tuple[float, dict[str, float]]:
    """Score every lr in `lrs` by held-out top-1 on the labelled subset; returns (best lr, scores)."""
    labels = labelled_train.targets  # type: ignore[attr-defined]
    train_idx, held_idx = split_holdout(labels, float(settings["holdout_fraction"]), int(settings["seed"]))
    if not train_idx:
        raise ValueError("the held-out part takes the whole labelled subset; lower holdout_fraction")
    fit_set, held_set = Subset(labelled_train, train_idx), Subset(labelled_eval, held_idx)
    for lr in settings["lrs"]:
        key = _lr_key(lr)
        if key in sidecar.data["trials"]:
            print(f"finetune: lr {key} already searched", file=sys.stderr)
            continue
        ckpt = Path(f"{out}.trial-{key}.ckpt")
        try:
            result: dict[str, Any] = run_trial(
                checkpoint, settings, fit_set, held_set, float(lr), num_classes, device, ckpt,
                f"{sidecar.data['key']}|lr={key}", f"search lr={key}",
            )
        except DivergedError as exc:
            print(f"finetune: {exc}; scoring lr {key} as 0", file=sys.stderr)
            result = {"top1": 0.0, "top5": 0.0, "diverged": True}
        sidecar.data["trials"][key] = result
        sidecar.save()
        ckpt.unlink(missing_ok=True)
    scores = {_lr_key(lr): float(sidecar.data["trials"][_lr_key(lr)]["top1"]) for lr in settings["lrs"]}
    best = max(settings["lrs"], key=lambda lr: scores[_lr_key(lr)])  # first lr wins ties
    return float(best), scores


def finetune(
    checkpoint: str | Path, settings: dict[str, Any], out: str | Path, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Search the lr (if `lrs`), fine-tune on the whole labelled subset, return val metrics (percent)."""
    from mokd.data import build_dataset, eval_transform, train_classification_transform

    require_settings(settings, ["data_train", "data_val"], "finetune")
    device = torch.device(device)
    load_teacher(checkpoint, settings)  # fail early on a wrong checkpoint
    train_cfg = subset_data_cfg(settings["data_train"], settings["subset"], out)
    size, mean, std = int(settings["image_size"]), settings["mean"], settings["std"]
    labelled_train = build_dataset(train_cfg, "train", train_classification_transform(size, mean, std))
    labelled_eval = build_dataset(train_cfg, "train", eval_transform(size, mean, std))
    num_classes = len(labelled_train.classes)  # type: ignore[attr-defined]
    warn_few_classes(labelled_train.targets, f"the labelled train split of {dataset_label(train_cfg)}")  # type: ignore[attr-defined]
    subset_file = train_cfg.get("file_list")
    subset_sha = file_sha256(subset_file, 64) if isinstance(subset_file, str) else None
    if subset_file:
        n = len(labelled_train)  # type: ignore[arg-type]
        print(f"finetune: labelled subset {subset_file} ({n} samples)", file=sys.stderr)
    # trials are keyed by their lr, so extending `lrs` keeps the finished ones
    trial_settings = {k: v for k, v in settings.items() if k not in ("lr", "lrs")}
    sidecar = Sidecar(Path(f"{out}.search.json"), resume_key(checkpoint, trial_settings, subset_sha))

    search: dict[str, float] = {}
    if settings["lrs"]:
        best_lr, search = lr_search(
            checkpoint, settings, labelled_train, labelled_eval, num_classes, device, out, sidecar
        )
    else:
        best_lr = float(settings["lr"])
    if sidecar.data["final"] is None or sidecar.data["final"]["lr"] != best_lr:
        val_set = build_dataset(settings["data_val"], "val", eval_transform(size, mean, std))
        warn_few_classes(val_set.targets, f"the val split of {dataset_label(settings['data_val'])}")  # type: ignore[attr-defined]
        ckpt = Path(f"{out}.ckpt")
        result = run_trial(
            checkpoint, settings, labelled_train, val_set, best_lr, num_classes, device, ckpt,
            f"{sidecar.data['key']}|final={_lr_key(best_lr)}", "final",
        )
        sidecar.data["final"] = {**result, "lr": best_lr}
        sidecar.save()
        ckpt.unlink(missing_ok=True)
    final = sidecar.data["final"]
    return {
        "top1": final["top1"], "top5": final["top5"], "best_lr": best_lr, "search": search,
        "labelled": len(labelled_train), "epochs": int(settings["epochs"]),  # type: ignore[arg-type]
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="one")


def run(args: argparse.Namespace) -> int:
    return run_protocol(args, "finetune", "finetune", finetune)
