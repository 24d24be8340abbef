"""A table marks every cell whose value comes from a teacher that ended collapsed (hand-made logs), in
Markdown and LaTeX, with a note naming the collapsed runs; a run that ends fine and a random
initialisation are never marked."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from mokd.cli import main
from tests.tables.markdown import pipe_tables

K = 64
LN_K = math.log(K)
REPORTED = "table,row,column,value,source,confidence\nTM,A@P,knn_dino,50.0,Table SM,high\n"


def write_log(path: Path, entropies: dict[str, float], steps: int = 3) -> str:
    """A log.jsonl in the engine's format whose last record has these teacher entropies (earlier ones: healthy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{"step": s, "epoch": 0, **{m: {"loss": 5.0, "teacher_entropy": 0.5 * LN_K if s < steps - 1 else e}
                                          for m, e in entropies.items()}} for s in range(steps)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def write_metrics(path: Path, top1: float, teacher: Path) -> str:
    """A metrics file as an evaluation writes it: the value and the teacher it was evaluated on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": "knn", "metrics": {"top1": top1}, "checkpoints": [str(teacher)]}))
    return str(path)


def teacher(root: Path, exp: str, role: str, seed: int = 0) -> Path:
    return root / "pretrain" / exp / f"seed{seed}" / "export" / f"teacher_{role}.pt"


def cell(root: Path, exp: str, role: str, top1: float, random_top1: float) -> dict:
    """One seed's k-NN of `role` in run `exp`, with its random initialisation as the reference."""
    ours = write_metrics(root / "eval" / exp / "seed0" / role / "knn.json", top1, teacher(root, exp, role))
    rand = write_metrics(root / "eval" / f"random_{role}" / "seed0" / role / "knn.json", random_top1,
                         teacher(root, f"random_{role}", role))
    return {"metrics": [ours], "join": "mean", "reference": {"metrics": [rand]}}


def run(root: Path, exp: str, entropies: dict[str, float]) -> dict:
    """A spec run: its log (hand-made, ending with `entropies`) and its teachers."""
    log = write_log(root / "pretrain" / exp / "seed0" / "log.jsonl", entropies)
    return {"name": exp, "seed": 0, "log": log, "out_dim": K,
            "models": {r: {"label": r.upper(), "teacher": str(teacher(root, exp, r))} for r in entropies}}


@pytest.fixture()
def spec(tmp_path: Path) -> dict:
    """Rows A and B, DINO and MOKD k-NN with MOKD − DINO and the random-initialisation view. dino_a ends
    uniform (0.995 ln K); dino_b and the pair mokd_ab end at 0.5 ln K."""
    root = tmp_path / "results"
    return {
        "id": "tm", "title": "Table TM: marks", "reconstructed": True,
        "columns": [{"key": "knn_dino", "label": "k-NN DINO"}, {"key": "knn_mokd", "label": "k-NN MOKD"}],
        "derived": [{"key": "gain", "label": "MOKD − DINO", "minus": ["knn_mokd", "knn_dino"]}],
        "rows": [
            {"key": "A@P", "label": "A", "cells": {"knn_dino": cell(root, "dino_a", "a", 48.0, 40.0),
                                                   "knn_mokd": cell(root, "mokd_ab", "a", 56.0, 40.0)}},
            {"key": "B@P", "label": "B", "cells": {"knn_dino": cell(root, "dino_b", "b", 60.0, 50.0),
                                                   "knn_mokd": cell(root, "mokd_ab", "b", 61.0, 50.0)}},
        ],
        "runs": [run(root, "dino_a", {"a": 0.995 * LN_K}), run(root, "dino_b", {"b": 0.5 * LN_K}),
                 run(root, "mokd_ab", {"a": 0.5 * LN_K, "b": 0.5 * LN_K})],
    }


def build(spec: dict, tmp_path: Path) -> tuple[str, str, str]:
    """(Markdown, LaTeX of ours and the random-initialisation view, LaTeX of the paper's view) as the CLI writes them."""
    (tmp_path / "reported.csv").write_text(REPORTED)
    out = tmp_path / "tables"
    assert main(["table", "--spec", json.dumps(spec), "--reported", str(tmp_path / "reported.csv"),
                 "--out-md", str(out / "t.md"), "--out-tex", str(out / "t.tex"),
                 "--out-tex-vs-paper", str(out / "p.tex")]) == 0
    return (out / "t.md").read_text(), (out / "t.tex").read_text(), (out / "p.tex").read_text()


def test_cells_of_a_run_that_ends_uniform_are_marked(spec: dict, tmp_path: Path) -> None:
    md, tex, paper = build(spec, tmp_path)
    ours, vs_paper, vs_random = pipe_tables(md)
    # Only dino_a's teacher collapsed: A's DINO cell, the A row's MOKD − DINO (56.0 − 48.0) and A's DINO gain
    # over its random initialisation (48.0 − 40.0); the paper view's Δ of that cell (48.0 − 50.0 = −2.0).
    assert ours[1:] == [["A", "48.0‡", "56.0", "8.0‡"], ["B", "60.0", "61.0", "1.0"]]
    assert vs_paper[1][1] == "50.0 (-2.0)‡" and vs_paper[2][1:] == ["n/a", "n/a", "n/a"]
    assert vs_random[1:] == [["A", "+8.0‡", "+16.0", "—"], ["B", "+10.0", "+11.0", "—"]]
    note = "ln K): A in dino_a, seed 0 (0.995 ln K, uniform)."
    notes = [line for line in md.splitlines() if line.startswith("- ‡:")]
    assert len(notes) == 1 and notes[0].endswith(note)  # not B, not the pair's teachers
    assert md.count("‡: from a teacher that ended collapsed (see the notes).") == 3  # each view's legend
    # LaTeX: the same marks in ours and in the random-initialisation float, the note under each float.
    assert "A & 48.0$^\\ddagger$ & 56.0 & 8.0$^\\ddagger$ \\\\" in tex and "B & 60.0 & 61.0 & 1.0 \\\\" in tex
    assert "A & +8.0$^\\ddagger$ & +16.0 & --- \\\\" in tex
    tex_note = note.replace("_", "\\_")
    assert tex.count(tex_note) == 2 and paper.count(tex_note) == 1
    assert "50.0 (-2.0)$^\\ddagger$" in paper


def test_runs_that_end_fine_mark_nothing(spec: dict, tmp_path: Path) -> None:
    spec["runs"][0] = run(tmp_path / "results", "dino_a", {"a": 0.97 * LN_K})  # below 0.98 ln K: not uniform
    md, tex, paper = build(spec, tmp_path)
    assert "‡" not in md and "ddagger" not in tex + paper and "Collapsed teachers" not in md


def test_a_one_hot_teacher_in_one_seed_marks_the_cell(spec: dict, tmp_path: Path) -> None:
    """A cell over two seeds is marked when one seed's teacher ended at one dimension (0.01 ln K < 0.05)."""
    root = tmp_path / "results"
    seed1 = write_metrics(root / "eval" / "mokd_ab" / "seed1" / "b" / "knn.json", 63.0, teacher(root, "mokd_ab", "b", 1))
    spec["rows"][1]["cells"]["knn_mokd"] = {"metrics": [spec["rows"][1]["cells"]["knn_mokd"]["metrics"][0], seed1],
                                            "join": "mean"}
    log = write_log(root / "pretrain" / "mokd_ab" / "seed1" / "log.jsonl", {"a": 0.5 * LN_K, "b": 0.01 * LN_K})
    spec["runs"].append({"name": "mokd_ab", "seed": 1, "log": log, "out_dim": K,
                         "models": {"b": {"label": "B", "teacher": str(teacher(root, "mokd_ab", "b", 1))}}})
    md, _, _ = build(spec, tmp_path)
    assert pipe_tables(md)[0][2] == ["B", "60.0", "62.0 ± 1.4 (2)‡", "2.0‡"]
    assert "ln K): A in dino_a, seed 0 (0.995 ln K, uniform); B in mokd_ab, seed 1 (0.010 ln K, one-hot)." in md


def test_a_missing_log_names_it(spec: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = copy.deepcopy(spec)
    bad["runs"][1]["log"] = str(tmp_path / "gone" / "log.jsonl")
    (tmp_path / "reported.csv").write_text(REPORTED)
    assert main(["table", "--spec", json.dumps(bad), "--reported", str(tmp_path / "reported.csv"),
                 "--out-md", str(tmp_path / "t.md")]) == 3
    err = capsys.readouterr().err
    assert "spec runs[1] (dino_b, seed 0): pre-training log not found:" in err and "gone/log.jsonl" in err
