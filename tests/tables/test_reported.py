"""The reported-number CSV: every number of the paper notes, their lookup, and the file's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mokd.tables.reported import Reported, TableError, load_reported, lookup, parse_value

CONFIG = Path(__file__).resolve().parents[2] / "config" / "reported.csv"
HEADER = "table,row,column,value,source,confidence\n"

# Written out by hand from the paper's supplementary tables S1-S3 (not generated from the CSV).
S1_COLUMNS = ["R50@R50-Eff-b0", "Eff-b0@R50-Eff-b0", "R50@R50-Mob-v3", "Mob-v3@R50-Mob-v3",
              "R101@R101-Eff-b0", "Eff-b0@R101-Eff-b0", "R101@R101-Mob-v3", "Mob-v3@R101-Mob-v3"]
S1 = {
    "SEED": [67.4, 61.3, 67.4, 55.2, 70.3, 63.0, 70.3, 59.9],
    "ReKD": [67.6, 63.4, 67.6, 56.7, 69.7, 65.0, 69.7, 59.6],
    "DisCo": [67.4, 66.5, 67.4, 64.4, 69.1, 68.9, 69.1, 65.7],
    "MOKD": [72.5, 69.2, 72.2, 66.0, 74.9, 70.1, 74.7, 67.2],
}
S2 = {"depth1": (87.4, 83.3), "depth2": (88.1, 84.1), "depth3": (88.3, 84.6)}
S3 = {
    ("DINO", "time_h"): "97+94", ("DINO", "mem_gb"): "6.4+6.3", ("DINO", "linear"): "72.1/73.8",
    ("MOKD", "time_h"): 122.0, ("MOKD", "mem_gb"): 13.5, ("MOKD", "linear"): "74.1/74.4",
}
T1 = {
    ("R50@R50-ViT-B", "linear_mokd"): (75.6, "medium-high"),
    ("R50@R50-ViT-B", "knn_mokd"): (70.6, "medium"),
    ("R50@*", "linear_dino"): (72.1, "high"),
    ("ViT-S@*", "linear_dino"): (73.8, "high"),
    ("ViT-B@R50-ViT-B", "linear_dino"): (77.0, "low"),
    ("ViT-B@R50-ViT-B", "linear_mokd"): (78.0, "low"),
    ("R50@R50-ViT-S", "linear_mokd"): (74.1, "high"),
    ("ViT-S@R50-ViT-S", "linear_mokd"): (74.4, "high"),
}


def expected() -> dict[tuple[str, str, str], tuple[float | str, str]]:
    out: dict[tuple[str, str, str], tuple[float | str, str]] = {}
    for method, values in S1.items():
        for col, v in zip(S1_COLUMNS, values):
            out[("S1", method, col)] = (v, "high")
            if method == "MOKD":  # Table T2 holds the same MOKD runs
                out[("T2", col, "linear_mokd")] = (v, "high")
    for depth, (r50, vits) in S2.items():
        out[("S2", depth, "R50")] = (r50, "high")
        out[("S2", depth, "ViT-S")] = (vits, "high")
    for (row, col), v in S3.items():
        out[("S3", row, col)] = (v, "high")
    for (row, col), vc in T1.items():
        out[("T1", row, col)] = vc
    return out


@pytest.fixture(scope="module")
def config_df():
    return load_reported(CONFIG)


def test_config_holds_every_reported_number_and_nothing_else(config_df) -> None:
    want = expected()
    got = {(r.table, r.row, r.column): (parse_value(r.value), r.confidence) for r in config_df.itertuples()}
    assert got == want
    assert len(config_df) == 32 + 6 + 6 + 8 + 8


def test_config_sources(config_df) -> None:
    assert (config_df["source"].str.len() > 0).all()
    for table in ("S1", "S2", "S3"):
        sources = config_df.loc[config_df["table"] == table, "source"]
        assert sources.str.contains(f"Table {table}").all()
    t2 = config_df.loc[config_df["table"] == "T2", "source"]
    assert t2.str.contains("Table S1").all() and t2.str.contains("same runs").all()
    poa = config_df[(config_df["table"] == "T1") & (config_df["row"] == "R50@R50-ViT-B")]
    assert poa["source"].str.contains("2408.01031").all()


def test_lookup_exact_and_wildcard(config_df) -> None:
    rep = lookup(config_df, "t1", "R50@R50-ViT-B", "linear_mokd")
    assert rep == Reported(75.6, rep.source, "medium-high") and not rep.flagged
    for pair in ("R50-ViT-S", "R50-ViT-B", "R50-R18"):  # the DINO R50 run of every pair
        assert lookup(config_df, "T1", f"R50@{pair}", "linear_dino").value == 72.1
    assert lookup(config_df, "T1", "ViT-S@R101-ViT-S", "linear_dino").value == 73.8
    low = lookup(config_df, "T1", "ViT-B@R50-ViT-B", "linear_dino")
    assert low.value == 77.0 and low.flagged
    s3 = lookup(config_df, "S3", "DINO", "time_h")
    assert s3.value == "97+94" and not s3.is_number


def test_lookup_unknown_is_none(config_df) -> None:
    assert lookup(config_df, "T1", "R101@R101-ViT-S", "linear_dino") is None
    assert lookup(config_df, "T1", "R50@R50-ViT-S", "knn_dino") is None
    assert lookup(config_df, "T1", "R50x@R50-ViT-S", "linear_dino") is None  # "R50@*" is not a prefix of it
    assert lookup(config_df, "T3", "R50@R50-ViT-B", "linear_mokd") is None
    assert lookup(config_df, "S1", "SEED", "R18@R50-R18") is None


def test_exact_row_wins_over_wildcard(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "T1,A@*,c,1.0,s1,high\nT1,A@P,c,2.0,s2,low\n")
    df = load_reported(path)
    assert lookup(df, "T1", "A@P", "c") == Reported(2.0, "s2", "low")
    assert lookup(df, "T1", "A@Q", "c") == Reported(1.0, "s1", "high")
    assert lookup(df, "T1", "B@P", "c") is None


def test_parse_value() -> None:
    assert parse_value("122") == 122.0 and isinstance(parse_value("122"), float)
    assert parse_value(" 13.5 ") == 13.5
    for text in ("97+94", "72.1/73.8", "nan", "inf", "1e3"):
        assert parse_value(text) == text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("T1,A@P,c,1.0,s,sure\n", "confidence 'sure'"),
        ("T1,A@P,c,n/a,s,high\n", "leave unknown values out"),
        ("T1,A@P,c,1.0,,high\n", "empty 'source'"),
        ("T1,A@P,c,1.0,s\n", "expected 6 fields"),
        ("T1,A*,c,1.0,s,high\n", "wildcard"),
        ("T1,A@P,c,1.0,s,high\nT1,A@P,c,2.0,s,high\n", "duplicate of line 2"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    with pytest.raises(TableError) as err:
        load_reported(path)
    line = body.count("\n") + 1  # the offending line is the last one
    assert f"{path}:{line}" in str(err.value) and message in str(err.value)


def test_bad_header_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("# a comment, with a comma\ntable,row,col,value,source,confidence\n")
    with pytest.raises(TableError, match=rf"{path}:2: header must be"):
        load_reported(path)
    with pytest.raises(TableError, match="not found: .*nope.csv"):
        load_reported(tmp_path / "nope.csv")


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("# header comment, with commas\n\n" + HEADER + "# x\ns1,SEED,R50,67.4,\"a, b\",high\n\n")
    df = load_reported(path)
    assert len(df) == 1
    assert lookup(df, "S1", "SEED", "R50") == Reported(67.4, "a, b", "high")
