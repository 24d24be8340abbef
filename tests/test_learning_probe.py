"""benchmarks/learning_probe.py: one real DINO run at the test scale against its random initialisation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.learning_probe import main
from benchmarks.workflow_config import load_workflow_config
from mokd.config import ConfigError


def data_overrides(root: Path) -> list[str]:
    return [f"datasets.{name}.spec.root={root}" for name in ("pretrain", "train", "val", "probe_train", "probe_val")]


def test_probe_reports_trained_and_random_knn(fashion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a multi-process job's environment the probe still runs one process (it would wait for rank 0).
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    out = tmp_path / "probe.json"
    result = main(["--config", "config/test.yaml", "--models", "r18", "--seeds", "0", "1", "--jobs", "2",
                   "--work", str(tmp_path / "run"), "--out", str(out),
                   *sum((["--set", o] for o in data_overrides(fashion_root)), [])])
    assert json.loads(json.dumps(result)) == json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["model"], r["seed"]) for r in rows] == [("r18", 0), ("r18", 1)]
    assert result["knn_protocol"] == "knn_probe"  # the held-out split the scale defines, not a table's
    assert result["held_out_overlap"] and not any(result["held_out_overlap"].values())
    for row in rows:
        for key in ("knn_top1", "knn_top1_random_init"):
            assert 0.0 <= row[key] <= 100.0
        assert row["gain"] == pytest.approx(row["knn_top1"] - row["knn_top1_random_init"], abs=0.01)
        assert 0.0 < row["teacher_entropy"] <= row["ln_K"] + 1e-3
        assert row["ln_K"] == pytest.approx(math.log(load_workflow_config("config/test.yaml")["pretrain"]["out_dim"]), abs=1e-3)
        assert (tmp_path / "run" / f"s{row['seed']}" / "teacher_r18.pt").is_file()
    assert rows[0]["knn_top1_random_init"] != rows[1]["knn_top1_random_init"] or rows[0]["run"] != rows[1]["run"]
    (summary,) = result["summary"]
    gains = [r["gain"] for r in rows]
    assert summary["gain"][0] == pytest.approx(sum(gains) / 2)
    assert summary["gain"][1] == pytest.approx(abs(gains[0] - gains[1]) / math.sqrt(2))  # sample std of two values
    assert summary["gain_se"] == pytest.approx(summary["gain"][1] / math.sqrt(2))


def test_probe_names_a_bad_override_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epoch"):
        main(["--config", "config/test.yaml", "--models", "r18", "--work", str(tmp_path), "--set", "pretrain.epoch=1"])
