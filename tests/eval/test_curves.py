"""`python -m mokd curves`: loss terms and teacher entropy from hand-made log.jsonl files, ln K, collapse flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mokd.cli import main
from mokd.eval.curves import collapse_state, read_log, series

K = 64


def write_log(path: Path, entropies: dict[str, list[float]]) -> str:
    """A log.jsonl in the engine's format: per step, per model its loss, terms and teacher entropy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    n = len(next(iter(entropies.values())))
    for step in range(n):
        record = {"step": step, "epoch": 0}
        for model, ent in entropies.items():
            record[model] = {"loss": 5.0 - step * 0.1, "L_sm": 4.0 - step * 0.1, "L_cm": 1.0, "lr": 1e-3,
                             "teacher_entropy": ent[step], "center_norm": 0.1}
        lines.append(json.dumps(record))
    lines.insert(1, "")  # blank lines are ignored; records are sorted by step
    path.write_text("\n".join(reversed(lines)) + "\n")
    return str(path)


@pytest.fixture()
def settings(tmp_path: Path) -> dict:
    ln_k = math.log(K)
    healthy = write_log(tmp_path / "pair" / "log.jsonl", {"r50": [ln_k * 0.9, 3.0, 2.5], "vit_s": [ln_k * 0.9, 3.2, 2.8]})
    collapsed = write_log(tmp_path / "dino" / "log.jsonl", {"r18": [3.0, 4.0, ln_k * 0.995]})
    return {"scale": "test", "runs": [
        {"name": "mokd_r50_vit_s", "title": "MOKD R50–ViT-S", "log": healthy, "out_dim": K,
         "models": {"r50": "R50", "vit_s": "ViT-S"}},
        {"name": "dino_r18", "title": "DINO R18", "log": collapsed, "out_dim": K, "models": {"r18": "R18"}},
    ]}


def test_read_log_and_series(settings: dict) -> None:
    records = read_log(settings["runs"][0]["log"])
    assert [r["step"] for r in records] == [0, 1, 2]
    curves = series(records, "vit_s")
    assert sorted(curves) == ["L_cm", "L_sm", "loss", "teacher_entropy"]  # not lr, centre norm
    assert curves["teacher_entropy"] == ([0, 1, 2], [math.log(K) * 0.9, 3.2, 2.8])


def test_collapse_state() -> None:
    ln_k = math.log(K)
    assert collapse_state(0.99 * ln_k, ln_k, 0.98) == "uniform"
    assert collapse_state(0.01 * ln_k, ln_k, 0.98) == "one-hot"
    assert collapse_state(0.5 * ln_k, ln_k, 0.98) == "ok"


def test_command_writes_figures_and_flags_collapse(settings: dict, tmp_path: Path) -> None:
    out = tmp_path / "figures" / "pretrain_curves.json"
    assert main(["curves", "--settings", json.dumps(settings), "--out", str(out), "--dpi", "40"]) == 0
    for ext in ("png", "pdf"):
        assert out.with_suffix(f".{ext}").stat().st_size > 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["mokd_r50_vit_s"]["ln_k"] == pytest.approx(math.log(K))
    assert metrics["mokd_r50_vit_s"]["steps"] == 3
    assert {m["collapse"] for m in metrics["mokd_r50_vit_s"]["models"].values()} == {"ok"}
    assert metrics["dino_r18"]["models"]["r18"]["collapse"] == "uniform"
    assert metrics["dino_r18"]["models"]["r18"]["final"]["L_sm"] == pytest.approx(3.8)


def test_missing_log_and_bad_settings(settings: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "c.json")
    settings["runs"][1]["log"] = str(tmp_path / "none" / "log.jsonl")
    assert main(["curves", "--settings", json.dumps(settings), "--out", out]) == 3
    assert "pre-training log not found" in capsys.readouterr().err
    assert main(["curves", "--settings", json.dumps({"runs": [{"name": "x"}]}), "--out", out]) == 2
    assert "missing key(s)" in capsys.readouterr().err
