"""A real run of the test scale: every table in both formats and every figure, a number in every cell
that should hold one; a second run runs nothing; editing one experiment reruns only what depends on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.workflow.smk import job_counts, snakemake, write_config

TABLES = ["t1", "t2", "t3", "t4", "t5", "t6", "s1", "s2", "s3"]
FIGURES = ["f4_tsne", "fs1_tsne", "f5_attention", "fs2_attention"]
REPORTED_ONLY_ROWS = ("SEED", "ReKD", "DisCo")


def our_cells(markdown: str) -> list[tuple[str, str]]:
    """(row label, our value) for every value column of a rendered table: columns come in threes
    (ours, reported, Δ) after the row label."""
    cells = []
    rows = [line for line in markdown.splitlines() if line.startswith("|") and not re.match(r"^\|[-:| ]+\|$", line)]
    for line in rows[1:]:  # the first row is the header
        parts = [p.strip() for p in line.strip("|").split("|")]
        label, values = parts[0], parts[1:]
        cells += [(label, values[i]) for i in range(0, len(values), 3)]
    return cells


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
        tex = (results / "tables" / f"table_{t}.tex").read_text()
        assert "\\toprule" in tex and "\\caption" in tex, t
        assert "Config hash" in md or "config hash" in md.lower(), t
        for label, ours in our_cells(md):
            if label.startswith(REPORTED_ONLY_ROWS):
                continue
            assert ours not in ("—", "", "n/a"), f"table {t}, row {label!r}: no value of ours"
    for f in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (results / "figures" / f"{f}.{ext}").stat().st_size > 0


@pytest.mark.slow
def test_second_run_runs_nothing(test_scale_run: tuple[Path, Path]) -> None:
    cfg, _ = test_scale_run
    out = snakemake("-n", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0
    assert job_counts(out.stdout + out.stderr) == {}, (out.stdout + out.stderr)[-3000:]


@pytest.mark.slow
def test_editing_one_experiment_reruns_only_it(test_scale_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A new lambda for the R50–R18 pair: that pre-training, its evaluations and the tables showing it."""
    cfg, results = test_scale_run
    edited = tmp_path / "edited.yaml"
    edited.write_text(cfg.read_text() + "experiments:\n  mokd_r50_r18: {models: [r50, r18], lambda: [0.5, 1.0]}\n")
    out = snakemake("-n", "--configfile", str(edited), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout + out.stderr)
    # T1 shows R50–R18 (k-NN and linear of both models: 4 evaluations), T2 its linear probes: 2 tables.
    assert counts.get("pretrain") == 1
    assert counts.get("evaluate") == 4
    assert counts.get("table") == 2
    assert "mokd_r50_r18" in out.stdout + out.stderr
