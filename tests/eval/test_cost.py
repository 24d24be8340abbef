"""Table S3 figures from hand-written pre-training summaries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mokd.cli import main


def write_summary(path: Path, hours: float, mib: float, rate: float = 300.0, **extra: object) -> Path:
    summary = {"train_time_s": hours * 3600, "peak_memory_mb": mib, "images_per_s": rate, "device": "cuda",
               "device_name": "Tesla V100-SXM2-32GB", "world_size": 8, "steps": 500, "epochs": 100,
               "models": ["r50"], "peak_memory_kind": "max_memory_allocated per GPU"}
    summary.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))
    return path


@pytest.fixture()
def summaries(tmp_path: Path) -> list[Path]:
    return [
        write_summary(tmp_path / "dino_r50" / "summary.json", 97.0, 6.4 * 1024, 370.0),
        write_summary(tmp_path / "dino_vits" / "summary.json", 94.0, 6.3 * 1024, 380.0, models=["vit_s"]),
        write_summary(tmp_path / "mokd" / "summary.json", 122.0, 13.5 * 1024, 290.0, models=["r50", "vit_s"]),
    ]


def run_cost(summaries: list[Path], out: Path, *extra: str, settings: dict | None = None) -> int:
    args = ["cost", "--summaries", *map(str, summaries), "--out", str(out), *extra]
    if settings is not None:
        args += ["--settings", json.dumps(settings)]
    return main(args)


def test_rows_sum_time_and_memory(summaries: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    rows = [{"name": "DINO R50/ViT-S", "runs": ["R50", "ViT-S"]}, {"name": "MOKD R50-ViT-S", "runs": ["MOKD"]}]
    rc = run_cost(summaries, out, "--labels", "R50", "ViT-S", "MOKD", settings={"scale": "paper", "rows": rows})
    assert rc == 0
    record = json.loads(out.read_text())
    m = record["metrics"]
    assert m["runs"]["R50"]["train_time_h"] == pytest.approx(97.0)
    assert m["runs"]["ViT-S"]["peak_memory_gb"] == pytest.approx(6.3)
    dino = m["rows"]["DINO R50/ViT-S"]
    assert dino["train_time_h"] == pytest.approx(191.0) and dino["train_time_h_text"] == "97+94"
    assert dino["peak_memory_gb"] == pytest.approx(12.7) and dino["peak_memory_gb_text"] == "6.4+6.3"
    assert dino["images_per_s_text"] == "370/380" and dino["devices"] == "8x Tesla V100-SXM2-32GB"
    mokd = m["rows"]["MOKD R50-ViT-S"]
    assert (mokd["train_time_h_text"], mokd["peak_memory_gb_text"]) == ("122", "13.5")
    assert mokd["peak_memory_gb"] == pytest.approx(13.5)
    expected_sha = [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in summaries]
    assert record["provenance"]["checkpoint_sha256"] == expected_sha
    assert [m["runs"][k]["summary_sha256"] for k in ("R50", "ViT-S", "MOKD")] == expected_sha
    assert record["checkpoints"] == [str(p) for p in summaries]


def test_defaults_one_row_per_run_named_by_folder(summaries: list[Path], tmp_path: Path) -> None:
    small = write_summary(tmp_path / "cpu" / "summary.json", 1.5 / 3600, 1011.7, 45.3, device="cpu", device_name="cpu",
                          world_size=1, peak_memory_kind="peak RSS of the process")
    out = tmp_path / "cost.json"
    assert run_cost([summaries[0], small], out) == 0
    rows = json.loads(out.read_text())["metrics"]["rows"]
    assert set(rows) == {"dino_r50", "cpu"}
    assert rows["cpu"]["train_time_h_text"] == "0.000417" and rows["cpu"]["peak_memory_gb_text"] == "0.988"
    assert rows["cpu"]["devices"] == "1x cpu" and rows["cpu"]["peak_memory_kind"] == "peak RSS of the process"


def test_bad_inputs_are_errors_naming_them(
    summaries: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken" / "summary.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps({"train_time_s": 10}))
    assert run_cost([broken], tmp_path / "a.json") == 2
    assert str(broken) in capsys.readouterr().err
    rows = [{"name": "x", "runs": ["nope"]}]
    assert run_cost(summaries[:1], tmp_path / "b.json", settings={"rows": rows}) == 2
    assert "'nope'" in capsys.readouterr().err
    assert run_cost(summaries[:2], tmp_path / "c.json", "--labels", "only-one") == 2
    assert not any((tmp_path / n).exists() for n in ("a.json", "b.json", "c.json"))
