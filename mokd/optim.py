"""A model's optimizer: parameter groups, each with its own lr and weight-decay schedules.

As DINO: a decayed group and a group of biases and norm parameters without weight decay, both on the
model's schedules. As the authors' CNN (docs/METHOD_NOTES.md §5): the T-Head may be a third group of
the same optimizer with schedules of its own (`t_head_group`: the ViT's lr and weight decay, decay on
every T-Head tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mokd.schedules import cosine_schedule, duration_iters


def is_no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases and norm weights (every 1-d tensor) get no weight decay (DINO's rule)."""
    return p.ndim <= 1 or name.endswith(".bias")


@dataclass
class GroupSchedule:
    """Per-iteration lr and weight decay of one parameter group; `weight_decay` None = no decay."""

    lr: np.ndarray
    weight_decay: np.ndarray | None
    name: str = "model"  # "model" (the model's own schedules) or "t_head" (t_head_group's)


def schedules_of(cfg: dict[str, Any], batch_size: int, epochs: int, iters_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """lr (warm-up then cosine; base lr scaled by batch/256) and weight decay (cosine, or constant) arrays."""
    base_lr = cfg["lr"] * batch_size / 256.0
    warmup = duration_iters(cfg, "warmup", iters_per_epoch, epochs * iters_per_epoch)
    lr = cosine_schedule(base_lr, cfg["min_lr"], epochs, iters_per_epoch, warmup_iters=warmup)
    wd_end = cfg["weight_decay"] if cfg["weight_decay_end"] is None else cfg["weight_decay_end"]
    wd = cosine_schedule(cfg["weight_decay"], wd_end, epochs, iters_per_epoch)
    return lr, wd


def build_optimizer(groups: list[dict[str, Any]], cfg: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    """SGD or AdamW from an optimizer config, with torch's foreach kernels."""
    if cfg["name"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg["momentum"], weight_decay=0.0, foreach=True)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg["betas"]), weight_decay=0.0, foreach=True)


@dataclass
class ScheduledOptimizer:
    """An optimizer whose parameter group i follows `schedules[i]`; `lr` and `weight_decay` are the
    first group's (the model's own schedules, as logged)."""

    optimizer: torch.optim.Optimizer
    schedules: list[GroupSchedule]

    @property
    def lr(self) -> np.ndarray:
        return self.schedules[0].lr

    @property
    def weight_decay(self) -> np.ndarray:
        wd = self.schedules[0].weight_decay
        return wd if wd is not None else np.zeros_like(self.schedules[0].lr)

    def group_schedule(self, name: str) -> GroupSchedule | None:
        """The first group schedule named `name` (e.g. "t_head"), if any."""
        return next((s for s in self.schedules if s.name == name), None)

    def apply(self, step: int) -> None:
        for group, schedule in zip(self.optimizer.param_groups, self.schedules):
            group["lr"] = float(schedule.lr[step])
            group["weight_decay"] = 0.0 if schedule.weight_decay is None else float(schedule.weight_decay[step])


def scheduled_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    cfg: dict[str, Any],
    batch_size: int,
    epochs: int,
    iters_per_epoch: int,
    t_head_group: dict[str, Any] | None = None,
) -> ScheduledOptimizer:
    """The optimizer of one model's student and its group schedules.

    Groups, in order: decayed, not decayed (on the model's schedules); with `t_head_group`, the
    parameters named `t_head.*` leave those two for a group on the T-Head's own schedules (decayed
    whole when `decay_norms_and_biases`, else split the same way). Empty groups are kept, so a group's
    index never depends on the model.
    """
    lr, wd = schedules_of(cfg, batch_size, epochs, iters_per_epoch)
    trainable = [(n, p) for n, p in named_params if p.requires_grad]
    in_t_head = (lambda n: n.startswith("t_head.")) if t_head_group is not None else (lambda n: False)
    own = [(n, p) for n, p in trainable if not in_t_head(n)]
    groups = [
        ([p for n, p in own if not is_no_decay(n, p)], GroupSchedule(lr, wd)),
        ([p for n, p in own if is_no_decay(n, p)], GroupSchedule(lr, None)),
    ]
    if t_head_group is not None:
        t_lr, t_wd = schedules_of(t_head_group, batch_size, epochs, iters_per_epoch)
        t_params = [(n, p) for n, p in trainable if in_t_head(n)]
        if t_head_group["decay_norms_and_biases"]:
            groups.append(([p for _, p in t_params], GroupSchedule(t_lr, t_wd, "t_head")))
        else:
            groups.append(([p for n, p in t_params if not is_no_decay(n, p)], GroupSchedule(t_lr, t_wd, "t_head")))
            groups.append(([p for n, p in t_params if is_no_decay(n, p)], GroupSchedule(t_lr, None, "t_head")))
    optimizer = build_optimizer([{"params": params} for params, _ in groups], cfg, float(lr[0]))
    scheduled = ScheduledOptimizer(optimizer, [schedule for _, schedule in groups])
    scheduled.apply(0)
    return scheduled


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
