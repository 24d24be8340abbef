"""Per-iteration schedules (DINO style): one value per training iteration, precomputed as an array.

A duration of a schedule (a warm-up, the last-layer freeze) is given in a config section as
`<name>_epochs` (the paper's unit), or as `<name>_iters` or `<name>_fraction` (of the run) for short
runs whose epochs are a few iterations; the last two, when set, replace the first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_start: float = 0.0,
    warmup_iters: int | None = None,
) -> np.ndarray:
    """Linear warm-up from `warmup_start` to `base`, then cosine from `base` towards `final`: DINO's
    arithmetic, which the authors' code uses for lr, weight decay and teacher momentum.

    The warm-up lasts `warmup_iters` iterations when given, else `warmup_epochs` epochs; its n values
    are `linspace(warmup_start, base, n)`, the last one `base` itself. The cosine over the remaining R
    iterations takes `final + (base - final) * (1 + cos(pi * i / R)) / 2` for i = 0 .. R-1: it starts at
    `base` and stops one step short of `final`. Returns `epochs * iters_per_epoch` values.
    """
    total = epochs * iters_per_epoch
    if warmup_iters is None:
        warmup_iters = int(round(warmup_epochs * iters_per_epoch))
    warmup_iters = min(warmup_iters, total)
    warmup = np.linspace(warmup_start, base, warmup_iters) if warmup_iters else np.array([])
    rest = total - warmup_iters
    steps = np.arange(rest)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(rest, 1)))
    return np.concatenate([warmup, cosine])


def warmup_then_constant(start: float, end: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Per-epoch values: linear from `start` to `end` over `warmup_epochs`, then `end` (teacher temperature)."""
    warm = np.linspace(start, end, warmup_epochs) if warmup_epochs > 0 else np.array([])
    return np.concatenate([warm, np.full(max(epochs - warmup_epochs, 0), end)])[:epochs]


def given_in_epochs(section: Mapping[str, Any], name: str) -> bool:
    """Whether the duration `name` of a config section is given in epochs (no `_iters`/`_fraction`)."""
    return section.get(f"{name}_iters") is None and section.get(f"{name}_fraction") is None


def duration_iters(section: Mapping[str, Any], name: str, iters_per_epoch: int, total_iters: int, whole_epochs: bool = False) -> int:
    """Iterations of the duration `name`: `<name>_iters`, else `<name>_fraction` of the run, else `<name>_epochs`.

    `whole_epochs` rounds a number of epochs up to whole epochs (the last-layer freeze: "during the
    first epoch(s)"); otherwise epochs are rounded to the nearest iteration.
    """
    if section.get(f"{name}_iters") is not None:
        n = int(section[f"{name}_iters"])
    elif section.get(f"{name}_fraction") is not None:
        n = int(round(float(section[f"{name}_fraction"]) * total_iters))
    else:
        epochs = float(section.get(f"{name}_epochs") or 0)
        n = (math.ceil(epochs) if whole_epochs else epochs) * iters_per_epoch
        n = int(round(n))
    return min(max(n, 0), total_iters)


def teacher_temperature(
    start: float, end: float, section: Mapping[str, Any], epochs: int, iters_per_epoch: int
) -> np.ndarray:
    """Per-iteration teacher temperature: a linear warm-up from `start` to `end`, then `end`.

    Given in epochs (`warmup_epochs`, the paper's), the value changes once per epoch as in DINO; given
    in iterations or as a fraction of the run, it changes every iteration (short runs, whose epochs
    are a few steps, would otherwise change it in a few jumps).
    """
    total = epochs * iters_per_epoch
    if given_in_epochs(section, "warmup"):
        per_epoch = warmup_then_constant(start, end, int(section.get("warmup_epochs") or 0), epochs)
        return np.repeat(per_epoch, iters_per_epoch)
    warm = duration_iters(section, "warmup", iters_per_epoch, total)
    ramp = np.linspace(start, end, warm) if warm > 0 else np.array([])
    return np.concatenate([ramp, np.full(total - warm, end)])
