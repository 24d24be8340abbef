"""Tiny pre-training configs for the core tests (same code path as every scale, smaller numbers)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mokd.config import validate

CNN_A = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}, "stem_stride": 1}
CNN_B = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 24, 48], "layers": [1, 1, 1, 1]}, "stem_stride": 1}
VIT_A = {"arch": "vit_tiny_patch16_224", "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}}
CROPS = {"global_size": 32, "local_size": 16, "n_local": 2}
VIT_B = {"arch": "vit_tiny_patch16_224", "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 3}}


def model(name: str, backbone: dict[str, Any], vit: bool = False, lam: float = 1.0) -> dict[str, Any]:
    opt = (
        {"name": "adamw", "lr": 1e-3, "min_lr": 1e-5, "warmup_epochs": 0, "weight_decay": 0.04, "weight_decay_end": 0.4}
        if vit
        else {"name": "sgd", "lr": 0.3, "min_lr": 0.01, "warmup_epochs": 0}
    )
    return {
        "name": name,
        "backbone": copy.deepcopy(backbone),
        "lambda": lam,
        "mlp_head": {"hidden_dim": 64, "bottleneck_dim": 16, "norm_last_layer": not vit},
        "optimizer": opt,
        "teacher_temp": {"warmup_epochs": 1},
        "freeze_last_layer_epochs": 0,
    }


def tiny_config(models: list[dict[str, Any]], data_root: Path | str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "seed": 0,
        "epochs": 2,
        "batch_size": 8,
        "num_workers": 0,
        "device": "cpu",
        "checkpoint_every_iters": 2,
        "log_every_iters": 1,
        "out_dim": 64,
        "data": {"name": "fashion_mnist", "root": str(data_root), "max_per_class": 2},
        "crops": dict(CROPS),
        "t_head": {"dim": 24, "depth": 1, "num_heads": 3},
        "models": models,
    }
    cfg.update(overrides)
    return validate(cfg, "pretrain")


PAIRS = {
    "cnn_vit": lambda: [model("cnn", CNN_A), model("vit", VIT_A, vit=True, lam=0.1)],
    "cnn_cnn": lambda: [model("big", CNN_A), model("small", CNN_B, lam=0.1)],
    "vit_vit": lambda: [model("big", VIT_A, vit=True), model("small", VIT_B, vit=True, lam=0.1)],
    "dino": lambda: [model("cnn", CNN_A)],
}
