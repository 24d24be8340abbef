"""Tables that can be verified: a table records the content hash of every metrics file it read, a
metrics file its own (its seal); the table builder refuses an edited or damaged metrics file naming
what to do, and `python -m mokd verify` (and `snakemake verify`) reports every table and metrics file
that no longer matches what it was built from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mokd.cli import main
from mokd.eval.common import write_metrics
from mokd.provenance import file_sha256
from mokd.tables import inputs
from tests.workflow.smk import snakemake, write_config

REPORTED = "table,row,column,value,source,confidence\n"


def metrics(results: Path, run: str, top1: float) -> Path:
    """A run's exported teacher (any bytes) and its k-NN metrics file, as an evaluation job writes it."""
    teacher = results / "pretrain" / run / "seed0" / "export" / f"teacher_{run}.pt"
    teacher.parent.mkdir(parents=True, exist_ok=True)
    if not teacher.exists():
        teacher.write_bytes(f"weights of {run}".encode())
    out = results / "eval" / run / "seed0" / run / "knn.json"
    write_metrics(out, "knn", {"top1": top1}, [teacher], {"ks": [20], "scale": "test"}, "fashion_mnist")
    return out


def build(results: Path, tmp_path: Path) -> int:
    """Table TX (one row per run) into results/tables/, in every format; the command's exit status."""
    rows = [{"key": run, "label": run, "cells": {"knn": {"metrics": str(results / "eval" / run / "seed0" / run / "knn.json")}}}
            for run in ("dino", "mokd")]
    spec = {"id": "tx", "title": "Table TX: k-NN", "reconstructed": False, "columns": [{"key": "knn", "label": "k-NN"}],
            "rows": rows}
    (tmp_path / "reported.csv").write_text(REPORTED)
    tables = results / "tables"
    return main(["table", "--spec", json.dumps(spec), "--reported", str(tmp_path / "reported.csv"),
                 "--out-md", str(tables / "table_tx.md"), "--out-tex", str(tables / "table_tx.tex"),
                 "--out-tex-vs-paper", str(tables / "table_tx_vs_paper.tex"), "--out-html", str(tables / "table_tx.html")])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    metrics(results, "dino", 62.5)
    metrics(results, "mokd", 64.0)
    assert build(results, tmp_path) == 0
    return results


def verify(results: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["verify", str(results)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def edit_top1(path: Path, value: float) -> None:
    record = json.loads(path.read_text())
    record["metrics"]["top1"] = value
    path.write_text(json.dumps(record, indent=2))


def test_every_table_file_records_what_it_read(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    knn = results / "eval" / "dino" / "seed0" / "dino" / "knn.json"
    for name in ("table_tx.md", "table_tx.tex", "table_tx_vs_paper.tex", "table_tx.html"):
        recorded = inputs.recorded(results / "tables" / name)
        assert recorded is not None and len(recorded) == 2, name
        assert {"sha256": file_sha256(knn), "path": "../eval/dino/seed0/dino/knn.json"} in recorded
    assert "mokd-table-inputs" not in (results / "tables" / "table_tx.md").read_text().split("<!--")[0]
    code, lines, err = verify(results, capsys)
    assert code == 0 and lines == [], lines
    assert "4 table files and 2 metrics files checked: all match what they were built from" in err


def test_a_hand_edited_metrics_file_is_refused_and_reported(results: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    knn = results / "eval" / "dino" / "seed0" / "dino" / "knn.json"
    edit_top1(knn, 99.9)
    code, lines, _ = verify(results, capsys)
    assert code == 9
    assert f"bad metrics {knn}: changed after its job wrote it" in lines[0]
    assert f"rm {knn} && snakemake {knn}" in lines[0]
    tables = results / "tables"
    assert lines[1:] == [f"stale table {tables / 'table_tx.md'} (and table_tx.html, table_tx.tex, table_tx_vs_paper.tex): "
                         f"../eval/dino/seed0/dino/knn.json changed since it was built; rebuild: snakemake -f "
                         f"{tables / 'table_tx.md'}"]
    md = (results / "tables" / "table_tx.md").read_text()
    assert build(results, tmp_path) == 2  # the table is not rebuilt with 99.9
    err = capsys.readouterr().err
    assert f"metrics file {knn} was changed after its job wrote it" in err and f"snakemake {knn}" in err
    assert "99.9" not in (results / "tables" / "table_tx.md").read_text() and md.count("62.5") >= 1


def test_a_restored_older_copy_makes_the_table_stale(results: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`cp -p` of an older (whole, sealed) metrics file: its old time keeps Snakemake from rebuilding the
    table, verify does not."""
    knn = results / "eval" / "mokd" / "seed0" / "mokd" / "knn.json"
    older = metrics(tmp_path / "older", "mokd", 61.0)
    shutil.copy2(older, knn)
    code, lines, _ = verify(results, capsys)
    assert code == 9 and len(lines) == 1, lines
    assert lines[0].startswith(f"stale table {results / 'tables' / 'table_tx.md'} (and table_tx.html, ")
    assert lines[0].endswith(": ../eval/mokd/seed0/mokd/knn.json changed since it was built; rebuild: snakemake -f "
                             f"{results / 'tables' / 'table_tx.md'}")


def test_a_truncated_metrics_file_says_what_to_delete_and_rerun(results: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    knn = results / "eval" / "dino" / "seed0" / "dino" / "knn.json"
    knn.write_text(knn.read_text()[:40])
    assert build(results, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"metrics file {knn} is damaged (not valid JSON" in err
    assert f"delete it and run its job again: snakemake {knn}" in err
    code, lines, _ = verify(results, capsys)
    assert code == 9 and f"bad metrics {knn}: damaged (not valid JSON)" in lines[0]


def test_metrics_of_a_retrained_teacher_are_stale(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = results / "pretrain" / "mokd" / "seed0" / "export" / "teacher_mokd.pt"
    teacher.write_bytes(b"weights of a longer run")
    code, lines, _ = verify(results, capsys)
    knn = results / "eval" / "mokd" / "seed0" / "mokd" / "knn.json"
    assert code == 9 and lines == [
        f"stale metrics {knn}: its checkpoint {teacher} changed since it was evaluated; rebuild: snakemake -f {knn}"]
    teacher.unlink()
    assert "is gone" in verify(results, capsys)[1][0]


def test_snakemake_verify_target(results: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", results)
    ok = snakemake("verify", "--cores", "1", "--configfile", str(cfg), timeout=300)
    assert ok.returncode == 0 and "all match what they were built from" in ok.stdout + ok.stderr, ok.stderr[-3000:]
    edit_top1(results / "eval" / "dino" / "seed0" / "dino" / "knn.json", 99.9)
    bad = snakemake("verify", "--cores", "1", "--configfile", str(cfg), timeout=300)
    assert bad.returncode != 0 and "bad metrics" in bad.stdout + bad.stderr, bad.stderr[-3000:]
