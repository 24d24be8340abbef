"""What the core tests share: a trainer of a tiny config, its first batch, steps and their records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mokd.data import build_dataset
from mokd.engine import Trainer

TERMS = ("L_sm", "L_st", "L_cm", "L_ct")


def make_trainer(cfg: dict[str, Any], out: Path) -> Trainer:
    return Trainer(cfg, out, build_dataset(cfg["data"], "train"))


def first_batch(trainer: Trainer) -> list[torch.Tensor]:
    return next(iter(trainer.data.epoch(0)))


def run_steps(trainer: Trainer, crops: list[torch.Tensor], n: int = 2, epoch: int = 1) -> list[dict[str, Any]]:
    torch.manual_seed(123)  # drop-path masks, where a model has drop-path
    return [trainer.train_step(crops, epoch) for _ in range(n)]


def loss_values(records: list[dict[str, Any]], trainer: Trainer) -> list[float]:
    return [r[m.name][t] for r in records for m in trainer.models for t in TERMS if t in r[m.name]]


def student_params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach() for m in trainer.models for p in m.slot.student.parameters()]


def slot_states(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every student and teacher tensor of every model, by name."""
    return {f"{m.name}.{k}": v for m in trainer.models for k, v in m.slot.state_dict().items()}


def assert_params_close(a: Trainer, b: Trainer, rtol: float, atol: float) -> None:
    for pa, pb in zip(student_params(a), student_params(b)):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol)
