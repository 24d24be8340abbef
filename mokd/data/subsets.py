"""Labelled subsets: seeded class-balanced sampling and the text files that record subsets."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mokd.atomic import write_text


def class_balanced_subset(labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Indices of a seeded subset holding ``fraction`` of every class (at least one per class).

    Each class contributes ``max(1, round(fraction * n_class))`` samples drawn without replacement;
    the same ``(labels, fraction, seed)`` always gives the same sorted index list.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[int(y)].append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for y in sorted(by_class):
        members = by_class[y]
        k = min(len(members), max(1, int(round(fraction * len(members)))))
        picked = rng.choice(len(members), size=k, replace=False)
        chosen.extend(members[j] for j in picked)
    return sorted(chosen)


def write_file_list(path: str | os.PathLike[str], entries: Iterable[str | int]) -> Path:
    """Write one entry per line, atomically (temp file then rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(e).strip() for e in entries]
    bad = [line for line in lines if not line or "\n" in line]
    if bad:
        raise ValueError(f"file-list entries must be non-empty single lines, got {bad[0]!r}")
    return write_text(path, "".join(line + "\n" for line in lines))


def read_file_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a one-entry-per-line text file; blank lines and lines starting with '#' are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [s for s in (line.strip() for line in f) if s and not s.startswith("#")]
