"""How much a teacher's pooled features vary, and how much of it follows the labels.

    .venv/bin/python benchmarks/feature_geometry.py CACHE [CACHE ...]

Each CACHE is a feature-cache file of an evaluation (`<run>/feature_cache/*-pooled-*.pt`, as the k-NN
and the linear probe write them: features and labels). Per file it prints:
- dim: the feature dimension;
- effective dim: the participation ratio of the covariance's eigenvalues, (sum λ)² / sum λ², from 1
  (all variance along one direction) to dim (isotropic);
- class share: the share of the variance between class means, sum_c n_c |μ_c − μ|² / sum_i |x_i − μ|²
  (1: features are their class mean; 0: class means coincide).
A backbone whose training collapses to a nuisance direction shows a small effective dim and a class
share below its random initialisation's (docs/DEFAULT_SCALE.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def effective_dim(features: torch.Tensor) -> float:
    """Participation ratio of the covariance eigenvalues of `features` (rows are samples)."""
    centred = features - features.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / len(features)).clamp(min=0)
    return float(eig.sum() ** 2 / (eig**2).sum())


def class_share(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of the total variance that lies between the class means (sample-weighted)."""
    mean = features.mean(0)
    total = float(((features - mean) ** 2).sum())
    between = 0.0
    for c in labels.unique():
        rows = features[labels == c]
        between += len(rows) * float(((rows.mean(0) - mean) ** 2).sum())
    return between / total


def read_cache(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (float64) and labels of a feature-cache file; a file without them is an error naming it."""
    blob = torch.load(path, map_location="cpu", weights_only=True)  # tensors and a key, as mokd/eval/features.py writes them
    if not isinstance(blob, dict) or "features" not in blob or "labels" not in blob:
        raise SystemExit(f"{path}: not a feature cache (expected a dict with 'features' and 'labels')")
    return blob["features"].double(), blob["labels"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("caches", nargs="+", help="feature-cache files (*-pooled-*.pt)")
    args = parser.parse_args(argv)
    print("| file | dim | effective dim | class share |")
    print("|---|---:|---:|---:|")
    for path in args.caches:
        features, labels = read_cache(path)
        print(f"| {path} | {features.shape[1]} | {effective_dim(features):.1f} | {class_share(features, labels):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
