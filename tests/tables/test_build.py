"""`python -m mokd table`: cells, Δ, flags, notes, footer, Markdown and LaTeX, and bad input."""

from __future__ import annotations

import copy
import shutil
import subprocess
import json
from pathlib import Path

import pytest

from mokd.cli import main
from mokd.provenance import code_version
from mokd.tables.build import build_table, load_spec, validate_spec
from mokd.tables.reported import TableError, load_reported

CONFIG = Path(__file__).resolve().parents[2] / "config" / "reported.csv"
REPORTED = """table,row,column,value,source,confidence
TX,A@*,knn_dino,50.0,"Paper supplementary, Table SX",high
TX,A@P,knn_mokd,55.0,a blog post,low
TX,B@P,knn_mokd,61.0,"Paper supplementary, Table SX",medium
TS,DINO,time_h,97+94,Table S3,high
TS,DINO,linear,72.1/73.8,Table S3,high
TS,MOKD,time_h,122,Table S3,high
"""


def write_json(path: Path, data: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture()
def reported(tmp_path: Path) -> Path:
    path = tmp_path / "reported.csv"
    path.write_text(REPORTED)
    return path


@pytest.fixture()
def spec(tmp_path: Path) -> dict:
    m = tmp_path / "results"
    return {
        "id": "tx",
        "title": "Table TX: k-NN of A & B",
        "caption": "Stand-in scale: resnet_18 on 10% of Fashion-MNIST.",
        "reconstructed": True,
        "notes": ["Tiny runs, 2 epochs."],
        "footer": {"config_hash": "cafe1234", "code_version": "9.9.9+gabc"},
        "row_header": "model (pair)",
        "columns": [{"key": "knn_dino", "label": "k_NN DINO"}, {"key": "knn_mokd", "label": "k_NN MOKD"}],
        "derived": [{"key": "gain", "label": "Δ (MOKD−DINO)", "minus": ["knn_mokd", "knn_dino"]}],
        "rows": [
            {"key": "A@P", "label": "A (A–B)", "cells": {
                "knn_dino": {"metrics": write_json(m / "a_dino.json", {"metrics": {"top1": 48.26}})},
                "knn_mokd": {"metrics": write_json(m / "a_mokd.json", {"metrics": {"top1": 56.04, "top5": 90}})}}},
            {"key": "B@P", "label": "B (A–B)", "cells": {
                "knn_dino": {"metrics": write_json(m / "b.json", {"metrics": {"per": [{"acc": 60}]}}),
                             "value": "metrics.per.0.acc"},
                "knn_mokd": {"metrics": None}}},
        ],
    }


def md_rows(md: str) -> list[list[str]]:
    """Cells of the pipe table's body rows."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_cells_and_delta_by_hand(spec: dict, reported: Path) -> None:
    _, md, _ = build_table(validate_spec(spec), load_reported(reported))
    # Row A: ours 48.26 -> 48.3 vs 50.0 (wildcard A@*): -1.7; ours 56.04 -> 56.0 vs 55.0 (low): +1.0;
    # derived: ours 56.0 - 48.3 = 7.7, reported 55.0 - 50.0 = 5.0 (low, flagged), Δ 7.7 - 5.0 = +2.7.
    # Row B: ours 60 vs n/a; MOKD has no value of ours vs 61.0; derived: no value, n/a.
    assert md_rows(md) == [
        ["A (A–B)", "48.3", "50.0", "-1.7", "56.0", "55.0†", "+1.0", "7.7", "5.0†", "+2.7"],
        ["B (A–B)", "60.0", "n/a", "—", "—", "61.0", "—", "—", "n/a", "—"],
    ]
    header = [ln for ln in md.splitlines() if ln.startswith("|")][0]
    assert [c.strip() for c in header.strip("|").split("|")][:4] == [
        "model (pair)", "k_NN DINO ours", "k_NN DINO reported", "k_NN DINO Δ"]


def test_markdown_document(spec: dict, reported: Path) -> None:
    _, md, _ = build_table(validate_spec(spec), load_reported(reported))
    assert md.startswith("## Table TX: k-NN of A & B\n")
    assert "Stand-in scale: resnet_18 on 10% of Fashion-MNIST." in md
    assert "main paper's table was not available as text" in md and "reconstructed" in md
    assert "- Tiny runs, 2 epochs." in md
    flag_note = next(ln for ln in md.splitlines() if ln.startswith("- †"))
    assert "low-confidence" in flag_note and "a blog post" in flag_note
    sources = next(ln for ln in md.splitlines() if ln.startswith("- Reported values from"))
    assert "Paper supplementary, Table SX" in sources and "a blog post" in sources
    assert md.rstrip().splitlines()[-1] == "Config hash: cafe1234 · code version: 9.9.9+gabc"


def test_own_layout_caption_and_no_flag_note(spec: dict, reported: Path) -> None:
    spec["reconstructed"] = False
    spec["rows"] = spec["rows"][1:]  # B@P only: no low-confidence value
    _, md, tex = build_table(validate_spec(spec), load_reported(reported))
    assert "paper's own table" in md and "not available as text" not in md
    assert "†" not in md and "dagger" not in tex


def test_latex(spec: dict, reported: Path) -> None:
    frame, md, tex = build_table(validate_spec(spec), load_reported(reported))
    for token in ("\\begin{table}", "\\toprule", "\\midrule", "\\bottomrule", "\\label{tab:tx}", "\\end{table}"):
        assert token in tex
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    # The caption: title without "Table TX:", escaped, then the spec's caption, escaped.
    assert "\\caption{k-NN of A \\& B. Stand-in scale: resnet\\_18 on 10\\% of Fashion-MNIST." in tex
    assert "\\multicolumn{3}{c}{k\\_NN DINO}" in tex
    assert "$\\Delta$ (MOKD$-$DINO)" in tex
    assert "A (A--B) & 48.3 & 50.0 & -1.7 & 56.0 & 55.0$^\\dagger$ & +1.0 & 7.7 & 5.0$^\\dagger$ & +2.7 \\\\" in tex
    assert "model (pair)" in tex
    assert "Config hash: cafe1234 $\\cdot$ code version: 9.9.9+gabc" in tex
    # The same frame drives both: every body cell of the Markdown is in the frame.
    assert frame.values.tolist() == md_rows(md)


def test_string_values_have_no_delta(tmp_path: Path, reported: Path) -> None:
    cost = write_json(tmp_path / "cost.json", {"metrics": {"rows": {"DINO": {"t": "0.1+0.2", "h": 0.31}}}})
    spec = {
        "id": "ts", "title": "Table TS: cost", "reconstructed": False,
        "columns": [{"key": "time_h", "label": "time (h)"}, {"key": "linear", "label": "linear"}],
        "rows": [
            {"key": "DINO", "label": "DINO R50/ViT-S", "cells": {
                "time_h": {"metrics": cost, "value": "metrics.rows.DINO.t"}, "linear": {"text": "61.0/62.5"}}},
            {"key": "MOKD", "label": "MOKD R50–ViT-S", "cells": {
                "time_h": {"metrics": cost, "value": "metrics.rows.DINO.h"}}},
        ],
    }
    _, md, _ = build_table(validate_spec(spec), load_reported(reported))
    assert md_rows(md) == [
        ["DINO R50/ViT-S", "0.1+0.2", "97+94", "—", "61.0/62.5", "72.1/73.8", "—"],
        ["MOKD R50–ViT-S", "0.3", "122.0", "-121.7", "—", "n/a", "—"],
    ]


def test_decimals(spec: dict, reported: Path) -> None:
    spec["decimals"] = 2
    spec["columns"][1]["decimals"] = 0
    _, md, _ = build_table(validate_spec(spec), load_reported(reported))
    # 48.26 - 50.00 = -1.74; 56.04 -> 56 vs 55 -> +1; derived (2 decimals): 56 - 48.26 = 7.74, 5.00, +2.74.
    assert md_rows(md)[0] == ["A (A–B)", "48.26", "50.00", "-1.74", "56", "55†", "+1", "7.74", "5.00†", "+2.74"]


def test_real_reported_file_t1(tmp_path: Path) -> None:
    spec = {
        "id": "t1", "title": "Table T1", "reconstructed": True,
        "columns": [{"key": "linear_dino", "label": "linear DINO"}, {"key": "linear_mokd", "label": "linear MOKD"}],
        "rows": [{"key": "R50@R50-ViT-S", "label": "R50", "cells": {
            "linear_dino": {"metrics": write_json(tmp_path / "l.json", {"metrics": {"top1": 70}})}}},
            {"key": "R101@R101-ViT-S", "label": "R101"}],
    }
    _, md, _ = build_table(validate_spec(spec), load_reported(CONFIG))
    assert md_rows(md) == [["R50", "70.0", "72.1", "-2.1", "—", "74.1", "—"],
                           ["R101", "—", "n/a", "—", "—", "n/a", "—"]]


def test_cli_file_and_inline_spec(spec: dict, reported: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    for i, arg in enumerate((str(spec_path), json.dumps(spec))):
        md, tex = out / f"t{i}.md", out / f"t{i}.tex"
        assert main(["table", "--spec", arg, "--reported", str(reported), "--out-md", str(md),
                     "--out-tex", str(tex)]) == 0
        assert "| A (A–B)" in md.read_text() and "\\toprule" in tex.read_text()
    assert (out / "t0.md").read_text() == (out / "t1.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["t0.md", "t0.tex", "t1.md", "t1.tex"]  # no temp files


def test_default_footer(spec: dict, reported: Path) -> None:
    del spec["footer"]
    _, md, _ = build_table(validate_spec(spec), load_reported(reported))
    footer = md.rstrip().splitlines()[-1]
    assert footer.startswith("Config hash: ") and footer.endswith(f"code version: {code_version()}")
    assert len(footer.split()[2]) == 12


def test_missing_metrics_file(spec: dict, reported: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = str(tmp_path / "results" / "gone.json")
    spec["rows"][1]["cells"]["knn_dino"] = {"metrics": missing}
    with pytest.raises(TableError, match=r"row 'B@P' column 'knn_dino': metrics file not found: .*gone.json"):
        build_table(validate_spec(spec), load_reported(reported))
    md = tmp_path / "x.md"
    assert main(["table", "--spec", json.dumps(spec), "--reported", str(reported), "--out-md", str(md)]) == 2
    assert missing in capsys.readouterr().err and not md.exists()


def test_bad_dotted_path(spec: dict, reported: Path) -> None:
    spec["rows"][0]["cells"]["knn_dino"]["value"] = "metrics.top5"
    with pytest.raises(TableError) as err:
        build_table(validate_spec(spec), load_reported(reported))
    assert "'metrics.top5'" in str(err.value) and "a_dino.json" in str(err.value)
    spec["rows"][0]["cells"]["knn_dino"]["value"] = "metrics"  # an object, not a value
    with pytest.raises(TableError, match="not a number or a string"):
        build_table(validate_spec(spec), load_reported(reported))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("reconstructed"), r"missing key\(s\) \['reconstructed'\]"),
        (lambda s: s.update(colums=[]), r"unknown key\(s\) \['colums'\]"),
        (lambda s: s["derived"][0].update(minus=["knn_mokd", "top"]), r"unknown column\(s\) \['top'\]"),
        (lambda s: s["rows"][0]["cells"].update(other={"metrics": None}), "cell 'other': unknown column"),
        (lambda s: s["rows"][1].update(key="A@P"), r"duplicate row key\(s\) \['A@P'\]"),
        (lambda s: s["rows"][0]["cells"]["knn_dino"].update(text="1"), "not both"),
        (lambda s: s.update(id="t 1"), "'id' must be"),
    ],
)
def test_bad_spec(spec: dict, edit, message: str) -> None:
    bad = copy.deepcopy(spec)
    edit(bad)
    with pytest.raises(TableError, match=message):
        validate_spec(bad)


def test_bad_spec_exit_code(tmp_path: Path, reported: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "x.md")
    assert main(["table", "--spec", "{not json", "--reported", str(reported), "--out-md", out]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["table", "--spec", str(tmp_path / "no.json"), "--reported", str(reported), "--out-md", out]) == 2
    assert "spec file not found" in capsys.readouterr().err
    with pytest.raises(TableError, match="not found"):
        load_spec(str(tmp_path / "no.json"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(spec: dict, reported: Path, tmp_path: Path) -> None:
    spec["latex_resize"] = True
    _, _, tex = build_table(validate_spec(spec), load_reported(reported))
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs}\\usepackage{graphicx}\n"
        "\\begin{document}\\input{table.tex}\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:]
