"""One cell's value over several seeds: mean, sample standard deviation and count, shown `mean ± std (n)`."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (n - 1) of one cell's per-seed values; `n` >= 2."""

    mean: float
    std: float
    n: int


def aggregate(values: list[float]) -> float | Stat:
    """One value stays itself; several become a Stat."""
    if not values:
        raise ValueError("no values to aggregate")
    if len(values) == 1:
        return float(values[0])
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Stat(mean, math.sqrt(var), len(values))
