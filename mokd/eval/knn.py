"""`python -m mokd knn`: DINO's weighted k-NN classifier on frozen teacher features.

Train (bank) and val (query) features are L2-normalised pooled teacher features; each query takes its
top-k train neighbours by cosine similarity, neighbour i votes for its class with weight
exp(sim_i / T) (T = 0.07), and the class with the largest summed vote wins. Top-1 and top-5 are
reported for every k in `ks` (k larger than the bank is clipped to the bank size), and the best top-1
over k is the headline number (docs/METHOD_NOTES.md §7).

The bank stays on the device and the queries go through in chunks of `chunk_size`, so memory is
bank + chunk_size x bank_size similarities (ImageNet: 1.28M x 2048 floats + 1024 x 1.28M).

Settings (defaults): data_train, data_val (dataset cfgs, required), image_size 224, mean/std
(ImageNet), batch_size 256 (feature extraction), ks [10, 20, 100, 200], temperature 0.07,
chunk_size 1024, num_workers 4, feature_cache (default: `features/` next to --out), scale,
expected_backbone (backbone cfg the checkpoint must hold).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mokd.config import validate
from mokd.eval.common import add_common_arguments, run_protocol
from mokd.eval.features import (
    cached_features,
    default_cache_dir,
    eval_transform_desc,
    load_teacher,
    require_settings,
)

DEFAULTS: dict[str, Any] = validate({}, "knn")  # mokd/schemas/knn.yaml: keys, defaults, bounds


def knn_votes(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
) -> dict[int, torch.Tensor]:
    """Summed class votes (Q, num_classes) for each k, for L2-normalised `bank` (N, C) and `queries` (Q, C)."""
    sims = queries @ bank.T
    kmax = min(max(ks), bank.shape[0])
    top_sims, top_idx = sims.topk(kmax, dim=1, largest=True, sorted=True)
    neighbour_labels = bank_labels[top_idx]
    weights = (top_sims / temperature).exp()
    votes = {}
    for k in ks:
        k_eff = min(k, bank.shape[0])
        v = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes[k] = v.scatter_add_(1, neighbour_labels[:, :k_eff], weights[:, :k_eff])
    return votes


def knn_evaluate(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    num_classes: int | None = None,
) -> dict[int, dict[str, float]]:
    """Top-1 / top-5 accuracy (percent) of the weighted k-NN classifier for each k in `ks`."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    device = torch.device(device)
    bank = F.normalize(train_feats.float().to(device), dim=1)
    bank_labels = train_labels.to(device)
    n5 = min(5, num_classes)
    correct = {k: [0, 0] for k in ks}
    for start in range(0, test_feats.shape[0], chunk_size):
        queries = F.normalize(test_feats[start : start + chunk_size].float().to(device), dim=1)
        targets = test_labels[start : start + chunk_size].to(device)
        for k, votes in knn_votes(bank, bank_labels, queries, ks, temperature, num_classes).items():
            top = votes.topk(n5, dim=1).indices
            hit = top == targets[:, None]
            correct[k][0] += int(hit[:, 0].sum())
            correct[k][1] += int(hit.any(dim=1).sum())
    n = test_feats.shape[0]
    return {
        k: {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "k_used": min(k, bank.shape[0])}
        for k, (c1, c5) in correct.items()
    }


def summarise(per_k: dict[int, dict[str, float]]) -> dict[str, Any]:
    """The metrics block: best top-1 over k (smallest k on ties), its top-5 and k, and every k."""
    best_k = max(sorted(per_k), key=lambda k: (per_k[k]["top1"], -k))
    return {
        "top1": per_k[best_k]["top1"],
        "top5": per_k[best_k]["top5"],
        "best_k": best_k,
        "per_k": {str(k): dict(v) for k, v in sorted(per_k.items())},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="one")


def knn(checkpoint: str, settings: dict[str, Any], out: str, device: torch.device) -> dict[str, Any]:
    """Weighted k-NN of the teacher's pooled features (cached per checkpoint) for every k of the settings."""
    require_settings(settings, ["data_train", "data_val"], "knn")
    backbone = load_teacher(checkpoint, settings)
    desc = eval_transform_desc(settings["image_size"], settings["mean"], settings["std"])
    common = dict(
        cache_dir=default_cache_dir(out, settings["feature_cache"]),
        batch_size=int(settings["batch_size"]),
        device=device,
        num_workers=int(settings["num_workers"]),
        backbone=backbone,
    )
    train_f, train_y = cached_features(checkpoint, settings["data_train"], "train", desc, "pooled", **common)
    val_f, val_y = cached_features(checkpoint, settings["data_val"], "val", desc, "pooled", **common)
    per_k = knn_evaluate(
        train_f, train_y, val_f, val_y, settings["ks"], float(settings["temperature"]),
        int(settings["chunk_size"]), device,
    )
    return summarise(per_k)


def run(args: argparse.Namespace) -> int:
    return run_protocol(args, "knn", "knn", knn)
