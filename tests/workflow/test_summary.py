"""`python -m mokd summary` on a hand-made results folder: collapsed teachers counted from their logs, each
DINO baseline's k-NN gain over its random initialisation by hand, what is missing, where the tables are."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from mokd.cli import main
from tests.workflow.smk import REPO

K = 64  # the test scale's out_dim


def write_log(path: Path, fractions: dict[str, float]) -> None:
    """A log.jsonl whose last record has these teacher entropies (fractions of ln K)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    last = {"step": 2, "epoch": 0, **{m: {"loss": 1.0, "teacher_entropy": f * math.log(K)} for m, f in fractions.items()}}
    first = {"step": 1, "epoch": 0, **{m: {"loss": 2.0, "teacher_entropy": 0.5 * math.log(K)} for m in fractions}}
    path.write_text(json.dumps(first) + "\n" + json.dumps(last) + "\n")


def write_knn(results: Path, exp: str, role: str, seed: int, top1: float) -> None:
    path = results / "eval" / exp / f"seed{seed}" / role / "knn.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": "knn", "metrics": {"top1": top1}}))


@pytest.fixture()
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test scale with two seeds, only Table T1 for the R50–ViT-S pair, no figure: its runs are
    dino_r50, dino_vit_s and mokd_r50_vit_s at seeds 0 and 1."""
    monkeypatch.chdir(REPO)  # config paths (base:, the schema) are the repository's
    cfg = {"base": "config/test.yaml", "scale": {"results": str(tmp_path / "results"), "seeds": [0, 1],
                                                 "tables": ["t1"], "figures": []},
           "tables": {"t1": {"pairs": ["mokd_r50_vit_s"]}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def summary(config: Path, capsys: pytest.CaptureFixture, *extra: str) -> list[str]:
    assert main(["summary", "--snakemake-args", "--cores", "1", "--configfile", str(config), *extra]) == 0
    return capsys.readouterr().out.splitlines()


def test_summary_by_hand(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    r = tmp_path / "results"
    write_log(r / "pretrain/dino_r50/seed0/log.jsonl", {"r50": 0.99})  # uniform
    write_log(r / "pretrain/dino_r50/seed1/log.jsonl", {"r50": 0.40})
    write_log(r / "pretrain/dino_vit_s/seed0/log.jsonl", {"vit_s": 0.45})
    write_log(r / "pretrain/dino_vit_s/seed1/log.jsonl", {"vit_s": 0.50})
    write_log(r / "pretrain/mokd_r50_vit_s/seed0/log.jsonl", {"r50": 0.02, "vit_s": 0.60})  # r50 one-hot
    # mokd_r50_vit_s seed 1: no log (not run)
    for seed, dino, rand in ((0, 70.0, 66.0), (1, 72.0, 65.0)):  # R50: +4.0, +7.0
        write_knn(r, "dino_r50", "r50", seed, dino)
        write_knn(r, "random_r50", "r50", seed, rand)
    write_knn(r, "dino_vit_s", "vit_s", 0, 60.0)  # ViT-S: seed 0 +9.5; seed 1's random init missing
    write_knn(r, "random_vit_s", "vit_s", 0, 50.5)
    write_knn(r, "dino_vit_s", "vit_s", 1, 61.0)
    for ext in ("md", "tex"):
        (r / "tables").mkdir(exist_ok=True)
        (r / "tables" / f"table_t1.{ext}").write_text("t1")
    lines = summary(config, capsys)
    assert lines[0] == f"[summary] scale 'test' ({r}), seeds 0, 1:"
    # 6 model runs read (2 + 2 + the pair's 2 at seed 0); collapsed: the pair's R50 and dino_r50 seed 0 (the
    # matrix's order).
    assert lines[1] == (
        "  collapse: 2 of 6 model runs ended with a collapsed MLP-Head teacher (final entropy above 0.98 ln K or "
        "below 0.05 ln K; all runs: 0.02-0.99 ln K), marked ‡ in every table cell from them: "
        "R50 in mokd_r50_vit_s, seed 0 (0.020 ln K, one-hot); R50 in dino_r50, seed 0 (0.990 ln K, uniform)")
    # R50: mean of +4.0, +7.0 = +5.5, sample std sqrt(1.5² + 1.5²) = 2.12; ViT-S: 60.0 − 50.5 at seed 0 only.
    assert lines[2] == ("  DINO k-NN − random initialisation (knn top-1, seeds 0, 1; mean ± std (n) of the per-seed "
                        "differences): R50 +5.5 ± 2.1 (2), ViT-S +9.5 (seed 0 only)")
    assert lines[3] == f"  tables: {r}/tables/ (1 of 1 built: table_<id>.md, .tex); figures: {r}/figures/ (0 of 0)"
    assert lines[4] == (f"  not found or unreadable (2): run log {r}/pretrain/mokd_r50_vit_s/seed1/log.jsonl; "
                        f"metrics file {r}/eval/random_vit_s/seed1/vit_s/knn.json")
    assert len(lines) == 5


def test_one_seed_and_nothing_collapsed(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    r = tmp_path / "results"
    write_log(r / "pretrain/dino_r50/seed0/log.jsonl", {"r50": 0.37})
    write_knn(r, "dino_r50", "r50", 0, 61.0)
    write_knn(r, "random_r50", "r50", 0, 64.5)
    lines = summary(config, capsys, "--config", "scale={seeds: [0]}")  # Snakemake's --config, as run.sh passes it
    assert lines[0].endswith("one seed (seed 0):")
    assert lines[1] == ("  collapse: 0 of 1 model runs ended with a collapsed MLP-Head teacher (final entropy above "
                        "0.98 ln K or below 0.05 ln K; all runs: 0.37-0.37 ln K)")
    assert lines[2] == "  DINO k-NN − random initialisation (knn top-1, one seed (seed 0)): R50 -3.5"
    assert "table t1" in lines[3] and "0 of 1 built" in lines[3]
    assert lines[4].startswith("  not found or unreadable (4): run log") and "dino_vit_s/seed0/log.jsonl" in lines[4]


def test_an_empty_results_folder_and_a_dry_run(config: Path, capsys: pytest.CaptureFixture) -> None:
    lines = summary(config, capsys)
    assert lines[1] == "  collapse: no run log found"
    assert lines[2] == "  DINO k-NN − random initialisation: no baseline with both metrics files"
    assert summary(config, capsys, "-np") == []  # a dry run builds nothing: no summary


def test_the_config_overrides_of_a_snakemake_command_line() -> None:
    from mokd.commands.check_config import config_overrides_of

    args = ["-n", "--config", "aa=1", "scale={seeds: [0, 1]}", "--cores", "2", "--config=bb=x", "-C", "cc=2.5"]
    assert config_overrides_of(args) == {"aa": 1, "scale": {"seeds": ["0", "1"]}, "bb": "x", "cc": 2.5}  # as Snakemake
    assert config_overrides_of(["table_s2", "--cores", "all"]) == {}


def test_run_sh_prints_the_summary_after_snakemake_succeeds() -> None:
    """scripts/run.sh (set -e) reaches the summary only when Snakemake succeeded; the summary's own failure
    does not fail the run."""
    lines = (REPO / "scripts" / "run.sh").read_text().splitlines()
    snakemake = next(i for i, line in enumerate(lines) if line.startswith(".venv/bin/snakemake "))
    summary = next(i for i, line in enumerate(lines) if "-m mokd summary" in line)
    assert summary > snakemake and "set -euo pipefail" in lines
    assert lines[summary] == '.venv/bin/python -m mokd summary --snakemake-args "$@" || echo "[run] no summary (see the error above)"'
