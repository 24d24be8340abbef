"""A real run of the test scale: every table in every format and every figure, a number in every cell
that should hold one, no more value columns than the paper's table; the HTML report of that run holds
every table and figure; a second run runs nothing; editing one experiment reruns only what depends on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tables.markdown import pipe_tables
from tests.workflow.smk import job_counts, snakemake, write_config

TABLES = ["t1", "t2", "t3", "t4", "t5", "t6", "s1", "s2", "s3"]
FIGURES = ["f4_tsne", "fs1_tsne", "f5_attention", "fs2_attention", "pretrain_curves"]
REPORTED_ONLY_ROWS = ("SEED", "ReKD", "DisCo")
# Value columns of the paper's tables (T1-T6 as reconstructed: per protocol DINO, MOKD, Δ; T2: the larger
# model, the smaller's DINO, MOKD, Δ; T5: six APs; T6: k-NN and linear of both models), at the test scale.
PAPER_VALUE_COLUMNS = {"t1": 6, "t2": 4, "t3": 6, "t4": 6, "t5": 6, "t6": 4, "s1": 8, "s2": 2, "s3": 3}


def our_cells(markdown: str) -> list[tuple[str, str]]:
    """(row label, our value) for every value column of the first view (ours, one value per cell)."""
    ours = pipe_tables(markdown)[0]
    return [(row[0], value) for row in ours[1:] for value in row[1:]]


@pytest.fixture(scope="module")
def test_scale_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("run")
    cfg = write_config(tmp / "c.yaml", "config/test.yaml", tmp / "results")
    out = snakemake("--cores", "2", "--configfile", str(cfg), timeout=1500)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return cfg, tmp / "results"


@pytest.mark.slow
def test_every_table_and_figure_is_produced(test_scale_run: tuple[Path, Path]) -> None:
    _, results = test_scale_run
    for t in TABLES:
        md = (results / "tables" / f"table_{t}.md").read_text()
        for tex in (results / "tables" / f"table_{t}.tex", results / "tables" / f"table_{t}_vs_paper.tex"):
            assert "\\toprule" in tex.read_text() and "\\caption" in tex.read_text(), tex
        assert (results / "tables" / f"table_{t}.html").read_text().startswith("<!DOCTYPE html>"), t
        assert "Config hash" in md or "config hash" in md.lower(), t
        views = pipe_tables(md)
        # ours, the paper's values, and (the test scale inherits random_init_reference) ours − random init;
        # S3's cells (time, memory, "72.1/73.8" texts) have no random reference.
        expected = 2 if t == "s3" else 3
        assert len(views) == expected, f"table {t}: ours, the paper's values, gain: got {len(views)} tables"
        for view in views[1:]:  # same shape
            assert view[0] == views[0][0] and [r[0] for r in view] == [r[0] for r in views[0]], t
        if t != "s3":
            assert "tab:" + t + "_vs_random" in (results / "tables" / f"table_{t}.tex").read_text(), t
            gains = [v for row in views[2][1:] for v in row[1:] if v != "—"]
            assert gains and all(v[0] in "+-" for v in gains), f"table {t}: {views[2]}"
        for view in views:
            assert {len(row) - 1 for row in view} == {PAPER_VALUE_COLUMNS[t]}, f"table {t}: {view[0]}"
        for label, ours in our_cells(md):
            if label.startswith(REPORTED_ONLY_ROWS):
                continue
            assert ours not in ("—", "", "n/a"), f"table {t}, row {label!r}: no value of ours"
    for f in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (results / "figures" / f"{f}.{ext}").stat().st_size > 0
    # Attention panels are named by the config's model labels (the paper's), not by timm architectures.
    for f in ("f5_attention", "fs2_attention"):
        metrics = json.loads((results / "figures" / f"{f}.json").read_text())["metrics"]
        panels = {v["panel"] for v in metrics.values() if isinstance(v, dict) and "panel" in v}
        assert panels and panels <= {"R50", "R101", "ViT-S", "ViT-B", "ViT-T", "R18", "R34"}, panels
    curves = json.loads((results / "figures" / "pretrain_curves.json").read_text())["metrics"]
    assert "mokd_r50_vit_s" in curves and all(r["ln_k"] > 0 for r in curves.values())


@pytest.mark.slow
def test_report_holds_every_table_and_figure(test_scale_run: tuple[Path, Path], tmp_path: Path) -> None:
    """`snakemake --report` of the finished run: one self-contained HTML file with every table (each of its
    files) and every figure as a report item, and the pre-training curves."""
    cfg, _ = test_scale_run
    report = tmp_path / "report.html"
    out = snakemake("--report", str(report), "--configfile", str(cfg), timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    text = report.read_text()
    for t in TABLES:
        for name in (f"table_{t}.html", f"table_{t}.md", f"table_{t}.tex", f"table_{t}_vs_paper.tex"):
            assert name in text, name
        assert f"Table {t.upper()}" in text, t
    for f in FIGURES:
        for ext in ("png", "pdf"):
            assert f"{f}.{ext}" in text, f"{f}.{ext}"
    for category in ("Tables", "Figures", "Pre-training"):
        assert category in text, category


@pytest.mark.slow
def test_second_run_runs_nothing(test_scale_run: tuple[Path, Path]) -> None:
    cfg, _ = test_scale_run
    out = snakemake("-n", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0
    assert job_counts(out.stdout + out.stderr) == {}, (out.stdout + out.stderr)[-3000:]


@pytest.mark.slow
def test_a_finished_run_verifies(test_scale_run: tuple[Path, Path]) -> None:
    """Every table records the metrics files it read, as they are; every metrics file matches its seal,
    its settings and its teacher (python -m mokd verify, through its Snakemake target)."""
    cfg, results = test_scale_run
    out = snakemake("verify", "--cores", "1", "--configfile", str(cfg), timeout=300)
    said = out.stdout + out.stderr  # the job's output, on Snakemake's
    assert out.returncode == 0, said[-3000:]
    assert "table files and" in said and "all match what they were built from" in said, said[-3000:]


@pytest.mark.slow
def test_editing_one_experiment_reruns_only_it(test_scale_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A new lambda for the R50–R18 pair: that pre-training, its evaluations and the tables showing it."""
    cfg, results = test_scale_run
    edited = tmp_path / "edited.yaml"
    edited.write_text(cfg.read_text() + "experiments:\n  mokd_r50_r18: {models: [r50, r18], lambda: [0.5, 1.0]}\n")
    out = snakemake("-n", "--configfile", str(edited), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout + out.stderr)
    # T1 shows R50–R18 (k-NN and linear of both models: the pair's one `features` job), T2 its linear
    # probes (the same job): 2 tables.
    assert counts.get("pretrain") == 1
    assert counts.get("evaluate_features__pairs") == 1 and "evaluate" not in counts and "evaluate_features" not in counts
    assert counts.get("table") == 2
    assert "mokd_r50_r18" in out.stdout + out.stderr
