"""`python -m mokd table`: the two views (ours; paper and Δ), seeds, flags, notes, footer, Markdown, LaTeX,
HTML, and bad input."""

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
from mokd.tables.views import column_groups, split_caption
from tests.tables.markdown import pipe_tables

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


def md_rows(md: str, view: int = 0) -> list[list[str]]:
    """Body rows of one view: 0 = ours, 1 = the paper's values with Δ."""
    return pipe_tables(md)[view][1:]


def test_cells_and_delta_by_hand(spec: dict, reported: Path) -> None:
    md = build_table(validate_spec(spec), load_reported(reported)).md
    # Row A: ours 48.26 -> 48.3 vs 50.0 (wildcard A@*): -1.7; ours 56.04 -> 56.0 vs 55.0 (low): +1.0;
    # derived: ours 56.0 - 48.3 = 7.7, reported 55.0 - 50.0 = 5.0 (low, flagged), Δ 7.7 - 5.0 = +2.7.
    # Row B: ours 60 vs n/a; MOKD has no value of ours vs 61.0; derived: no value, n/a.
    assert md_rows(md, 0) == [["A (A–B)", "48.3", "56.0", "7.7"], ["B (A–B)", "60.0", "—", "—"]]
    assert md_rows(md, 1) == [["A (A–B)", "50.0 (-1.7)", "55.0† (+1.0)", "5.0† (+2.7)"],
                              ["B (A–B)", "n/a", "61.0", "n/a"]]
    # Both views have the spec's rows and columns, one value per cell: no more value columns than the spec.
    headers = [t[0] for t in pipe_tables(md)]
    assert headers == [["model (pair)", "k_NN DINO", "k_NN MOKD", "Δ (MOKD−DINO)"]] * 2


def test_derived_column_stands_after_its_columns(spec: dict, reported: Path) -> None:
    """Per protocol DINO, MOKD, Δ, as the paper prints it, whatever the order of the spec's lists."""
    spec["columns"] += [{"key": "lin_dino", "label": "linear DINO"}, {"key": "lin_mokd", "label": "linear MOKD"}]
    spec["derived"] += [{"key": "lin_gain", "label": "linear Δ", "minus": ["lin_mokd", "lin_dino"]}]
    md = build_table(validate_spec(spec), load_reported(reported)).md
    assert pipe_tables(md)[0][0] == ["model (pair)", "k_NN DINO", "k_NN MOKD", "Δ (MOKD−DINO)", "linear DINO",
                                   "linear MOKD", "linear Δ"]


def test_seeds_mean_std_n(spec: dict, reported: Path, tmp_path: Path) -> None:
    """A cell with several seeds shows mean ± std (n) (sample std); Δ and derived columns use the mean."""
    seeds = [write_json(tmp_path / f"s{i}.json", {"metrics": {"top1": v}}) for i, v in enumerate((48.0, 49.0, 50.5))]
    spec["rows"][0]["cells"]["knn_dino"] = {"metrics": seeds, "join": "mean"}
    md = build_table(validate_spec(spec), load_reported(reported)).md
    # mean 49.1667 -> 49.2, std 1.2583 -> 1.3; vs 50.0: -0.8; derived 56.0 - 49.2 = 6.8, vs 5.0: +1.8.
    assert md_rows(md, 0)[0] == ["A (A–B)", "49.2 ± 1.3 (3)", "56.0", "6.8"]
    assert md_rows(md, 1)[0] == ["A (A–B)", "50.0 (-0.8)", "55.0† (+1.0)", "5.0† (+1.8)"]
    spec["rows"][0]["cells"]["knn_dino"] = {"metrics": seeds[:1], "join": "mean"}  # one seed: the value
    assert md_rows(build_table(validate_spec(spec), load_reported(reported)).md, 0)[0][1] == "48.0"


def test_derived_column_over_seeds_is_the_paired_difference(spec: dict, reported: Path, tmp_path: Path) -> None:
    """MOKD − DINO over the same seeds: the shown means' difference ± the std of per-seed differences."""
    def seeds(name: str, values: tuple[float, ...]) -> dict:
        return {"metrics": [write_json(tmp_path / f"{name}{i}.json", {"metrics": {"top1": v}})
                            for i, v in enumerate(values)], "join": "mean"}

    spec["rows"][0]["cells"] = {"knn_dino": seeds("d", (48.0, 49.0, 50.5)), "knn_mokd": seeds("m", (50.0, 52.0, 51.0))}
    md = build_table(validate_spec(spec), load_reported(reported)).md
    # DINO 49.1667 -> 49.2 ± 1.3; MOKD 51.0 ± 1.0; per-seed differences 2.0, 3.0, 0.5: std 1.258 -> 1.3;
    # shown Δ 51.0 − 49.2 = 1.8 (the mean of the differences, 1.8333, would also print 1.8).
    assert md_rows(md, 0)[0] == ["A (A–B)", "49.2 ± 1.3 (3)", "51.0 ± 1.0 (3)", "1.8 ± 1.3 (3)"]
    assert md_rows(md, 1)[0] == ["A (A–B)", "50.0 (-0.8)", "55.0† (-4.0)", "5.0† (-3.2)"]


def test_gain_over_the_random_initialisation_is_paired_by_seed(spec: dict, reported: Path, tmp_path: Path) -> None:
    """A cell with a reference gets a third view: ours − reference per seed, mean ± std (n)."""
    ours = [write_json(tmp_path / f"o{i}.json", {"metrics": {"top1": v}}) for i, v in enumerate((48.0, 49.0, 50.5))]
    rand = [write_json(tmp_path / f"r{i}.json", {"metrics": {"top1": v}}) for i, v in enumerate((45.0, 48.5, 47.0))]
    spec["rows"][0]["cells"]["knn_dino"] = {"metrics": ours, "join": "mean", "reference": {"metrics": rand}}
    built = build_table(validate_spec(spec), load_reported(reported))
    # Paired differences 3.0, 0.5, 3.5: mean 2.3333 -> +2.3, sample std 1.6073 -> 1.6. An unpaired
    # difference of means would have the same mean but not this spread; cells without a reference: —.
    assert [v.name for v in built.views] == ["ours", "paper", "vs_random"]
    assert md_rows(built.md, 2) == [["A (A–B)", "+2.3 ± 1.6 (3)", "—", "—"], ["B (A–B)", "—", "—", "—"]]
    assert md_rows(built.md, 0)[0][1] == "49.2 ± 1.3 (3)"  # our view is unchanged
    assert "\\label{tab:tx_vs_random}" in built.tex and "random initialisation" in built.html
    spec["rows"][0]["cells"]["knn_dino"]["reference"]["metrics"] = rand[:2]
    with pytest.raises(TableError, match="'reference' lists 2 metrics files for 3 of ours"):
        build_table(validate_spec(spec), load_reported(reported))


def test_no_reference_no_third_view(spec: dict, reported: Path) -> None:
    built = build_table(validate_spec(spec), load_reported(reported))
    assert len(built.views) == 2 and len(pipe_tables(built.md)) == 2 and "vs_random" not in built.tex


def test_markdown_document(spec: dict, reported: Path) -> None:
    md = build_table(validate_spec(spec), load_reported(reported)).md
    assert md.startswith("## Table TX: k-NN of A & B\n")
    assert md.index("### Ours") < md.index("### Paper") < md.index("Notes:")
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
    built = build_table(validate_spec(spec), load_reported(reported))
    md, tex = built.md, built.tex + built.tex_vs_paper
    assert "paper's own table" in md and "not available as text" not in md
    assert "†" not in md and "dagger" not in tex


def test_latex(spec: dict, reported: Path) -> None:
    built = build_table(validate_spec(spec), load_reported(reported))
    for tex, label in ((built.tex, "tx"), (built.tex_vs_paper, "tx_vs_paper")):
        for token in ("\\begin{table}", "\\toprule", "\\midrule", "\\bottomrule", f"\\label{{tab:{label}}}",
                      "\\end{table}"):
            assert token in tex
        assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
        assert "Config hash: cafe1234 $\\cdot$ code version: 9.9.9+gabc" in tex
        assert "model (pair)" in tex
    tex, paper = built.tex, built.tex_vs_paper
    # The caption: title without "Table TX:", escaped, then the spec's caption, escaped.
    assert "\\caption{k-NN of A \\& B. Stand-in scale: resnet\\_18 on 10\\% of Fashion-MNIST." in tex
    assert "\\caption{k-NN of A \\& B. Published values and $\\Delta$." in paper
    # "k_NN DINO", "k_NN MOKD" share their first word: a group over two columns.
    assert "\\multicolumn{2}{c}{k\\_NN}" in tex and "\\cmidrule(lr){2-3}" in tex
    assert "$\\Delta$ (MOKD$-$DINO)" in tex
    assert "A (A--B) & 48.3 & 56.0 & 7.7 \\\\" in tex
    assert "A (A--B) & 50.0 (-1.7) & 55.0$^\\dagger$ (+1.0) & 5.0$^\\dagger$ (+2.7) \\\\" in paper
    # The same frames drive every rendering: the Markdown's body cells are the views' frames.
    assert [v.frame.values.tolist() for v in built.views] == [md_rows(built.md, 0), md_rows(built.md, 1)]
    assert "<td>56.0</td>" in built.html and "<h3>Paper" in built.html


def test_caption_model_legend_becomes_a_list(spec: dict, reported: Path) -> None:
    spec["caption"] = "Scale 'test': tiny. Models: R50 = ResNet-50 family, 8-64 ch; ViT-S = ViT, 2 blocks."
    built = build_table(validate_spec(spec), load_reported(reported))
    assert "Scale 'test': tiny. Stand-in models (listed below): R50, ViT-S." in built.md
    assert "  - R50 = ResNet-50 family, 8-64 ch\n  - ViT-S = ViT, 2 blocks" in built.md
    assert "Models: R50 = ResNet-50 family, 8-64 ch; ViT-S = ViT, 2 blocks.\\par" in built.tex
    assert split_caption("No legend here.") == ("No legend here.", [])


def test_column_groups() -> None:
    assert column_groups(["knn DINO", "knn MOKD", "knn Δ", "linear DINO"]) == [
        ("knn", "DINO"), ("knn", "MOKD"), ("knn", "Δ"), ("", "linear DINO")]
    assert column_groups(["R50 (R50–Eff-b0)", "Eff-b0 (R50–Eff-b0)", "R101 (R101–Mob-v3)"]) == [
        ("R50–Eff-b0", "R50"), ("R50–Eff-b0", "Eff-b0"), ("", "R101 (R101–Mob-v3)")]
    assert column_groups(["Time (h)", "Mem. (G)", "LP"]) == [("", "Time (h)"), ("", "Mem. (G)"), ("", "LP")]


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
    md = build_table(validate_spec(spec), load_reported(reported)).md
    assert md_rows(md, 0) == [["DINO R50/ViT-S", "0.1+0.2", "61.0/62.5"], ["MOKD R50–ViT-S", "0.3", "—"]]
    assert md_rows(md, 1) == [["DINO R50/ViT-S", "97+94", "72.1/73.8"], ["MOKD R50–ViT-S", "122.0 (-121.7)", "n/a"]]


def test_decimals(spec: dict, reported: Path) -> None:
    spec["decimals"] = 2
    spec["columns"][1]["decimals"] = 0
    md = build_table(validate_spec(spec), load_reported(reported)).md
    # 48.26 - 50.00 = -1.74; 56.04 -> 56 vs 55 -> +1; derived (2 decimals): 56 - 48.26 = 7.74, 5.00, +2.74.
    assert md_rows(md, 0)[0] == ["A (A–B)", "48.26", "56", "7.74"]
    assert md_rows(md, 1)[0] == ["A (A–B)", "50.00 (-1.74)", "55† (+1)", "5.00† (+2.74)"]


def test_real_reported_file_t1(tmp_path: Path) -> None:
    spec = {
        "id": "t1", "title": "Table T1", "reconstructed": True,
        "columns": [{"key": "linear_dino", "label": "linear DINO"}, {"key": "linear_mokd", "label": "linear MOKD"}],
        "rows": [{"key": "R50@R50-ViT-S", "label": "R50", "cells": {
            "linear_dino": {"metrics": write_json(tmp_path / "l.json", {"metrics": {"top1": 70}})}}},
            {"key": "R101@R101-ViT-S", "label": "R101"}],
    }
    md = build_table(validate_spec(spec), load_reported(CONFIG)).md
    assert md_rows(md, 0) == [["R50", "70.0", "—"], ["R101", "—", "—"]]
    assert md_rows(md, 1) == [["R50", "72.1 (-2.1)", "74.1"], ["R101", "n/a", "n/a"]]


def test_cli_file_and_inline_spec(spec: dict, reported: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    for i, arg in enumerate((str(spec_path), json.dumps(spec))):
        md, tex = out / f"t{i}.md", out / f"t{i}.tex"
        paper, page = out / f"t{i}_vs_paper.tex", out / f"t{i}.html"
        assert main(["table", "--spec", arg, "--reported", str(reported), "--out-md", str(md),
                     "--out-tex", str(tex), "--out-tex-vs-paper", str(paper), "--out-html", str(page)]) == 0
        assert "| A (A–B)" in md.read_text() and "\\toprule" in tex.read_text()
        assert "tab:tx_vs_paper" in paper.read_text() and page.read_text().startswith("<!DOCTYPE html>")
    assert (out / "t0.md").read_text() == (out / "t1.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        "t0.html", "t0.md", "t0.tex", "t0_vs_paper.tex", "t1.html", "t1.md", "t1.tex", "t1_vs_paper.tex"]  # no temp files


def test_default_footer(spec: dict, reported: Path) -> None:
    del spec["footer"]
    md = build_table(validate_spec(spec), load_reported(reported)).md
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

