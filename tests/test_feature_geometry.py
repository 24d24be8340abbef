"""benchmarks/feature_geometry.py against hand computations on tiny feature sets."""

from __future__ import annotations

import pytest
import torch

from benchmarks.feature_geometry import class_share, effective_dim, main


def test_effective_dim_is_the_participation_ratio_of_the_covariance() -> None:
    # mean 0, covariance diag(0.5, 2): (0.5 + 2)^2 / (0.25 + 4) = 6.25 / 4.25
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    assert effective_dim(x) == pytest.approx(6.25 / 4.25)
    assert effective_dim(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=torch.float64)) == pytest.approx(2.0)
    assert effective_dim(torch.tensor([[1.0, 0], [-1, 0], [3, 0], [-3, 0]], dtype=torch.float64)) == pytest.approx(1.0)


def test_class_share_is_the_between_class_share_of_the_variance() -> None:
    # class 0 at 0 and 2 (mean 1), class 1 at 4 and 6 (mean 5), overall mean 3:
    # total 9 + 1 + 1 + 9 = 20, between 2 * 4 + 2 * 4 = 16
    x = torch.tensor([[0.0], [2.0], [4.0], [6.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert class_share(x, y) == pytest.approx(0.8)
    assert class_share(x, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.2)  # means 2 and 4: 2 * 1 + 2 * 1


def test_main_prints_one_row_per_cache_and_names_a_file_that_is_not_one(tmp_path, capsys) -> None:
    good = tmp_path / "a-pooled-x.pt"
    torch.save({"features": torch.tensor([[0.0], [2.0], [4.0], [6.0]]), "labels": torch.tensor([0, 0, 1, 1])}, good)
    assert main([str(good)]) == 0
    assert f"| {good} | 1 | 1.0 | 0.80 |" in capsys.readouterr().out
    bad = tmp_path / "b.pt"
    torch.save([1, 2], bad)
    with pytest.raises(SystemExit, match="not a feature cache"):
        main([str(bad)])
