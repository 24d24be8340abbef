"""The supervised training loop shared by the linear probe and fine-tuning.

SGD with momentum, an lr schedule (linear warm-up from 0, then cosine to 0, with DINO's arithmetic:
mokd/schedules.py) changed every iteration or once per epoch (`schedule_unit`; the authors' linear
probe steps torch's CosineAnnealingLR once per epoch), cross-entropy, optional evaluations after every
`evaluate_every` epochs (the authors' linear probe reports the best of them), and a resume checkpoint
written atomically after every epoch with those evaluations. Shuffling and the random augmentations of
epoch e are seeded from (seed, e), so an interrupted run resumed from its checkpoint ends with the same
weights and evaluations as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from mokd.config import config_hash
from mokd.eval.features import backbone_features
from mokd.provenance import file_sha256
from mokd.schedules import cosine_schedule

if TYPE_CHECKING:  # mokd.models imports timm (and torchvision): only where a backbone is built
    from mokd.models.backbone import Backbone


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite (learning rate too high)."""


@dataclass(frozen=True)
class SGDConfig:
    """Peak `lr` is the learning rate actually used (already scaled by batch / 256 by the caller)."""

    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    schedule_unit: str = "iteration"  # or "epoch": one lr per epoch (torch's CosineAnnealingLR stepped per epoch)


def lr_schedule(cfg: SGDConfig, iters_per_epoch: int) -> np.ndarray:
    """The lr of every iteration: warm-up then cosine to 0, per iteration or constant within each epoch."""
    if cfg.schedule_unit == "epoch":
        return np.repeat(cosine_schedule(cfg.lr, 0.0, cfg.epochs, 1, cfg.warmup_epochs), iters_per_epoch)
    if cfg.schedule_unit != "iteration":
        raise ValueError(f"schedule_unit must be 'iteration' or 'epoch', got {cfg.schedule_unit!r}")
    return cosine_schedule(cfg.lr, 0.0, cfg.epochs, iters_per_epoch, cfg.warmup_epochs)


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: lr = base_lr * batch_size / 256."""
    return float(base_lr) * batch_size / 256.0


def linear_head(in_dim: int, num_classes: int) -> nn.Linear:
    """A linear classifier initialised as DINO's: weight ~ N(0, 0.01^2), bias 0."""
    head = nn.Linear(in_dim, num_classes)
    nn.init.normal_(head.weight, mean=0.0, std=0.01)
    nn.init.zeros_(head.bias)
    return head


class FeatureClassifier(nn.Module):
    """A backbone feature (`mode` as in mokd.eval.features) followed by a linear head.

    `frozen=True` keeps the backbone in eval mode, without gradients (linear probe); otherwise the whole
    network trains (fine-tuning).
    """

    def __init__(self, backbone: Backbone, head: nn.Module, mode: str = "pooled", frozen: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.mode = mode
        self.frozen = frozen
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureClassifier:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                feats = backbone_features(self.backbone, x, self.mode)
        else:
            feats = backbone_features(self.backbone, x, self.mode)
        return self.head(feats)


def _batches(
    dataset: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None, num_workers: int,
    drop_last: bool, pin: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a dataset; a TensorDataset is sliced directly (no per-sample indexing)."""
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors
        n = x.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
        return
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
        drop_last=drop_last, pin_memory=pin,
    )
    yield from loader


def _iters_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def _load_resume(
    path: Path | None, key: str, state_module: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    """Epochs already done and the evaluations made, from a matching resume checkpoint (0, [] when none)."""
    if path is None or not path.is_file():
        return 0, []
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or corrupt file: start over rather than trust it
        print(f"resume checkpoint {path} unreadable ({type(exc).__name__}); starting over", file=sys.stderr)
        return 0, []
    if not isinstance(blob, dict) or blob.get("key") != key:
        print(f"resume checkpoint {path} is for other settings; starting over", file=sys.stderr)
        return 0, []
    state_module.load_state_dict(blob["state"])
    optimizer.load_state_dict(blob["optimizer"])
    print(f"resuming from {path} after epoch {blob['epoch']}", file=sys.stderr)
    return int(blob["epoch"]), list(blob.get("evaluations", []))


@dataclass
class TrainingRun:
    """What `train_classifier` did: epochs done, and each evaluation as {"epoch": e, **metrics}."""

    epochs_done: int
    evaluations: list[dict[str, Any]]


def train_classifier(
    model: nn.Module,
    dataset: Dataset,
    cfg: SGDConfig,
    device: torch.device | str = "cpu",
    *,
    ckpt_path: str | Path | None = None,
    ckpt_key: str = "",
    state_module: nn.Module | None = None,
    stop_after_epoch: int | None = None,
    num_workers: int = 0,
    desc: str = "train",
    evaluator: Callable[[], dict[str, float]] | None = None,
    evaluate_every: int = 0,
) -> TrainingRun:
    """Train `model` (images or features -> logits) on `dataset` with SGD + warm-up/cosine.

    With `evaluator` and `evaluate_every` k > 0, the model is evaluated after epochs 1, k+1, 2k+1, ...
    and after the last (the authors' `epoch % val_freq == 0 or last`, epochs counted from 0). The resume
    checkpoint at `ckpt_path` holds `state_module` (default: `model`; the linear probe saves just its
    head), the optimizer and the evaluations; it is used only if its `ckpt_key` matches.
    `stop_after_epoch` ends the call early (tests, time-limited jobs); a later call resumes.
    """
    from mokd.checkpoint import atomic_save

    device = torch.device(device)
    model.to(device)
    state_module = model if state_module is None else state_module
    ckpt = Path(ckpt_path) if ckpt_path is not None else None
    key = f"{ckpt_key}|{sorted(asdict(cfg).items())}|evaluate_every={evaluate_every if evaluator else 0}"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    drop_last = len(dataset) > cfg.batch_size  # never an empty epoch
    iters = _iters_per_epoch(len(dataset), cfg.batch_size, drop_last)
    schedule = lr_schedule(cfg, iters)
    done, evaluations = _load_resume(ckpt, key, state_module, optimizer)
    for epoch in range(done, cfg.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        _train_epoch(model, dataset, cfg, optimizer, schedule[epoch * iters : (epoch + 1) * iters], epoch, device,
                     num_workers, drop_last, desc)
        done = epoch + 1
        if evaluator is not None and evaluate_every > 0 and (epoch % evaluate_every == 0 or done == cfg.epochs):
            evaluations.append({"epoch": done, **evaluator()})
        if ckpt is not None:
            atomic_save(
                {"key": key, "epoch": done, "state": state_module.state_dict(), "optimizer": optimizer.state_dict(),
                 "evaluations": evaluations},
                ckpt,
            )
    return TrainingRun(done, evaluations)


def _train_epoch(
    model: nn.Module, dataset: Dataset, cfg: SGDConfig, optimizer: torch.optim.Optimizer, lrs: Any, epoch: int,
    device: torch.device, num_workers: int, drop_last: bool, desc: str,
) -> None:
    # Augmentations in the main process and dropout draw from the global RNG: seed it per epoch.
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    model.train()
    total, count = 0.0, 0
    batches = _batches(dataset, cfg.batch_size, True, generator, num_workers, drop_last, device.type == "cuda")
    for lr, (x, y) in zip(lrs, tqdm(batches, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", total=len(lrs),
                                      file=sys.stderr, leave=False, mininterval=10, disable=None)):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        if not torch.isfinite(loss):
            raise DivergedError(f"{desc}: loss became {loss.item()} in epoch {epoch + 1} (lr {lr:.4g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * y.shape[0]
        count += y.shape[0]
    print(f"{desc}: epoch {epoch + 1}/{cfg.epochs} loss {total / max(count, 1):.4f}", file=sys.stderr)


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: torch.device | str = "cpu", num_workers: int = 0,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy in percent of `model` (eval mode) on `dataset`."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    c1 = c5 = n = 0
    try:
        for x, y in _batches(dataset, batch_size, False, None, num_workers, False, device.type == "cuda"):
            logits = model(x.to(device))
            y = y.to(device)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hit = top == y[:, None]
            c1 += int(hit[:, 0].sum())
            c5 += int(hit.any(dim=1).sum())
            n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}


# Settings that do not change what is trained: a resume checkpoint stays valid when only these change.
RUNTIME_KEYS: frozenset[str] = frozenset(
    {"num_workers", "feature_cache", "scale", "eval_batch_size", "expected_backbone"}
)


def resume_key(checkpoint: str | Path, settings: dict[str, Any], extra: Any = None) -> str:
    """Identity of a training run: the teacher's sha256 and the settings that affect training."""
    relevant = {k: v for k, v in settings.items() if k not in RUNTIME_KEYS}
    return f"{file_sha256(checkpoint, 64)}|{config_hash([relevant, extra])}"
