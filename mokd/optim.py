"""Optimizers of one model: parameter groups without weight decay for norms and biases, and their schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mokd.schedules import cosine_schedule, duration_iters


def decay_groups(params: list[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
    """Split into a decayed group and a no-decay group (biases and norm weights: every 1-d tensor)."""
    decay, no_decay = [], []
    for name, p in params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "decay": True}, {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def build_optimizer(groups: list[dict[str, Any]], cfg: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """SGD or AdamW from an optimizer config, with torch's foreach kernels."""
    if cfg["name"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg["momentum"], weight_decay=0.0, foreach=True)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg["betas"]), weight_decay=0.0, foreach=True)


@dataclass
class ScheduledOptimizer:
    """An optimizer with per-iteration lr and weight-decay arrays."""

    optimizer: torch.optim.Optimizer
    lr: np.ndarray
    weight_decay: np.ndarray

    def apply(self, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.lr[step])
            if group.get("decay", False):
                group["weight_decay"] = float(self.weight_decay[step])


def scheduled_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    cfg: dict[str, Any],
    batch_size: int,
    epochs: int,
    iters_per_epoch: int,
) -> ScheduledOptimizer:
    """Optimizer + schedules: lr warm-up then cosine (base lr scaled by batch/256), wd cosine or constant."""
    base_lr = cfg["lr"] * batch_size / 256.0
    warmup = duration_iters(cfg, "warmup", iters_per_epoch, epochs * iters_per_epoch)
    lr = cosine_schedule(base_lr, cfg["min_lr"], epochs, iters_per_epoch, warmup_iters=warmup)
    wd_end = cfg["weight_decay"] if cfg["weight_decay_end"] is None else cfg["weight_decay_end"]
    wd = cosine_schedule(cfg["weight_decay"], wd_end, epochs, iters_per_epoch)
    optimizer = build_optimizer(decay_groups(named_params), cfg, float(lr[0]))
    return ScheduledOptimizer(optimizer, lr, wd)


IMPLEMENTATIONS = {"forloop": (False, False), "foreach": (True, False), "fused": (False, True)}


def with_implementation(optimizer: torch.optim.Optimizer, implementation: str) -> torch.optim.Optimizer:
    """The same optimizer (type, groups, hyper-parameters) with torch's for-loop, foreach or fused kernels.

    Only before the first step: the optimizer state is not carried over.
    """
    if optimizer.state:
        raise RuntimeError("with_implementation must run before the first step (the state would be lost)")
    foreach, fused = IMPLEMENTATIONS[implementation]
    groups = [{**g, "foreach": foreach, "fused": fused} for g in optimizer.param_groups]
    # every group holds all its hyper-parameters, so only the implementation flags are passed
    return type(optimizer)(groups, lr=optimizer.defaults["lr"], foreach=foreach, fused=fused)
