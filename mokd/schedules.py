"""Per-iteration schedules (DINO style): one value per training iteration, precomputed as an array."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    """Linear warm-up from `warmup_start` to `base` over `warmup_epochs`, then cosine from `base` to `final`.

    Returns `epochs * iters_per_epoch` values; the last one equals `final` exactly.
    """
    total = epochs * iters_per_epoch
    warmup_iters = min(int(round(warmup_epochs * iters_per_epoch)), total)
    warmup = np.linspace(warmup_start, base, warmup_iters, endpoint=False) if warmup_iters else np.array([])
    rest = total - warmup_iters
    if rest <= 0:
        return warmup[:total]
    steps = np.arange(rest)
    denom = max(rest - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / denom))
    if rest == 1:
        cosine = np.array([final])
    return np.concatenate([warmup, cosine])


def warmup_then_constant(start: float, end: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Per-epoch values: linear from `start` to `end` over `warmup_epochs`, then `end` (teacher temperature)."""
    warm = np.linspace(start, end, warmup_epochs) if warmup_epochs > 0 else np.array([])
    return np.concatenate([warm, np.full(max(epochs - warmup_epochs, 0), end)])[:epochs]
