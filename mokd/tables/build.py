"""Build one results table (Markdown and LaTeX): our values, the paper's reported values and Δ.

`python -m mokd table --spec SPEC [--reported config/reported.csv] --out-md X.md --out-tex X.tex`

SPEC is a JSON file or an inline JSON string (one that starts with "{"):

    {"id": "t1",                                   # required; table id: "T1" in the reported CSV, \\label{tab:t1}
     "title": "Table T1: ...",                     # required; Markdown heading, LaTeX caption (without "Table T1:")
     "reconstructed": true,                        # required; false: the paper's own layout (S1-S3)
     "caption": "scale, dataset, stand-in models", # optional free text, default ""
     "notes": ["..."],                             # optional lines printed under the table
     "footer": {"config_hash": "abc", "code_version": "0.1.0+g..."},  # optional; more keys are printed too
     "decimals": 1,                                # optional, default 1: digits of every number
     "row_header": "model (pair)",                 # optional, default "": header of the row-label column
     "latex_resize": false,                        # optional: wrap the tabular in \\resizebox{\\linewidth}{!}
     "columns": [{"key": "knn_dino", "label": "k-NN DINO", "decimals": 1}, ...],   # decimals optional
     "derived": [{"key": "knn_gain", "label": "k-NN Δ", "minus": ["knn_mokd", "knn_dino"]}],  # optional
     "rows": [{"key": "R50@R50-ViT-S", "label": "R50 (R50–ViT-S)",
               "cells": {"knn_dino": {"metrics": "results/.../knn.json", "value": "metrics.top1"}}}]}

A cell reads our value from its metrics JSON at the dotted path `value` (default "metrics.top1"; a
`metrics` list reads the value from each file and joins them with `join`, default "/"; a
list element by its index); the value is a number or a text ("97+94"). `"metrics": null`, or no cell,
means no value of ours ("—"); `"text": <literal>` gives our value directly (instead of `metrics`).
Relative metrics paths are relative to the current directory.

Reported values come from the CSV (`mokd.tables.reported`), looked up by (id upper-case, row key,
column key); unknown ones show "n/a". Every column shows ours, reported and Δ = ours − reported (when
both are numbers; our numbers are first rounded half-up to the shown decimals, so Δ matches the page). A derived column computes `a − b` of its two `minus` columns (base or earlier
derived), for ours and for reported separately; its reported value takes the lowest confidence of
the two. Low-confidence reported values are flagged with † and explained, with their source, in the
notes. Footer defaults: code_version of this checkout, config_hash of the spec itself.
Bad input (spec, metrics, reported CSV) exits with code 2 and a message naming the file/row/column.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from mokd.atomic import write_text
from mokd.config import config_hash
from mokd.provenance import code_version
from mokd.tables.reported import CONFIDENCES, Reported, TableError, load_reported, lookup
from mokd.tables.render import render_latex, render_markdown

NO_VALUE = "—"
UNKNOWN = "n/a"
FLAG = "†"
PARTS = ("ours", "reported", "Δ")
SPEC_KEYS = {"id", "title", "reconstructed", "caption", "notes", "footer", "decimals", "row_header",
             "latex_resize", "columns", "derived", "rows"}
REQUIRED_KEYS = ("id", "title", "reconstructed", "columns", "rows")
RECONSTRUCTED = ("Layout reconstructed: the main paper's table was not available as text, so its rows and "
                 "columns are reconstructed from the protocols described in the supplementary material.")
OWN_LAYOUT = "Layout: the rows and columns of the paper's own table."
LEGEND = (f"Each column gives our value, the paper's reported value ({UNKNOWN}: not known) and "
          f"Δ = ours − reported; {NO_VALUE}: no value.")

Value = float | str | None


@dataclass(frozen=True)
class Cell:
    ours: Value
    reported: Reported | None

    @property
    def delta(self) -> float | None:
        if isinstance(self.ours, float) and self.reported is not None and self.reported.is_number:
            return self.ours - float(self.reported.value)
        return None


# ---------------------------------------------------------------- spec
def load_spec(spec: str) -> dict[str, Any]:
    """The spec from an inline JSON string (starting with "{") or a JSON file, validated."""
    text, where = spec, "--spec (inline JSON)"
    if not spec.lstrip().startswith("{"):
        where = spec
        if not Path(spec).is_file():
            raise TableError(f"spec file not found: {spec}")
        text = Path(spec).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableError(f"spec {where} is not valid JSON: {exc}") from exc
    return validate_spec(data, where)


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise TableError(f"spec {where}: {msg}")


def _check_keys(obj: Any, allowed: set[str], required: tuple[str, ...], where: str) -> None:
    _need(isinstance(obj, dict), where, f"must be an object, got {obj!r}")
    unknown = sorted(set(obj) - allowed)
    _need(not unknown, where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in required if k not in obj]
    _need(not missing, where, f"missing key(s) {missing}")


def _check_columns(spec: dict[str, Any], where: str) -> None:
    keys: list[str] = []
    for i, col in enumerate(spec["columns"]):
        _check_keys(col, {"key", "label", "decimals"}, ("key", "label"), f"{where} columns[{i}]")
        keys.append(col["key"])
    for i, col in enumerate(spec["derived"]):
        here = f"{where} derived[{i}]"
        _check_keys(col, {"key", "label", "minus", "decimals"}, ("key", "label", "minus"), here)
        minus = col["minus"]
        _need(isinstance(minus, list) and len(minus) == 2, here, f"'minus' must be [a, b], got {minus!r}")
        bad = [k for k in minus if k not in keys]
        _need(not bad, here, f"'minus' names unknown column(s) {bad}; known before it: {keys}")
        keys.append(col["key"])
    dup = sorted({k for k in keys if keys.count(k) > 1})
    _need(not dup, where, f"duplicate column key(s) {dup}")
    for col in spec["columns"] + spec["derived"]:
        _need(isinstance(col["key"], str) and col["key"], where, f"column key must be a string: {col!r}")
        _need(isinstance(col.get("decimals", 0), int), where, f"column {col['key']!r}: decimals must be an int")


def _check_rows(spec: dict[str, Any], where: str) -> None:
    base = {c["key"] for c in spec["columns"]}
    keys = []
    for i, row in enumerate(spec["rows"]):
        here = f"{where} rows[{i}]"
        _check_keys(row, {"key", "label", "cells"}, ("key", "label"), here)
        keys.append(row["key"])
        cells = row.setdefault("cells", {})
        _need(isinstance(cells, dict), here, "'cells' must be an object {column key: cell}")
        for col, cell in cells.items():
            at = f"{here} ({row['key']!r}) cell {col!r}"
            _need(col in base, at, f"unknown column; columns: {sorted(base)}")
            _check_keys(cell, {"metrics", "value", "text", "join"}, (), at)
            _need(not (cell.get("metrics") and "text" in cell), at, "give 'metrics' or 'text', not both")
            m = cell.get("metrics")
            _need(m is None or isinstance(m, str) or (isinstance(m, list) and all(isinstance(x, str) for x in m)),
                  at, "'metrics' must be a path or a list of paths")
            _need(isinstance(cell.get("value", ""), str), at, "'value' must be a dotted path")
            text = cell.get("text")
            _need(text is None or (isinstance(text, (int, float, str)) and not isinstance(text, bool)), at,
                  "'text' must be a number or a string")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    _need(not dup, where, f"duplicate row key(s) {dup}")


def validate_spec(spec: Any, where: str = "(inline)") -> dict[str, Any]:
    """Check keys and types; fill the optional keys' defaults. Errors name the offending key."""
    _check_keys(spec, SPEC_KEYS, REQUIRED_KEYS, where)
    spec = {"caption": "", "notes": [], "footer": {}, "decimals": 1, "row_header": "", "latex_resize": False,
            "derived": [], **spec}
    _need(isinstance(spec["id"], str) and re.fullmatch(r"[A-Za-z0-9_-]+", spec["id"]) is not None, where,
          f"'id' must be letters, digits, '_' or '-', got {spec['id']!r}")
    _need(isinstance(spec["reconstructed"], bool), where, "'reconstructed' must be true or false")
    for key in ("title", "caption", "row_header"):
        _need(isinstance(spec[key], str), where, f"'{key}' must be a string")
    _need(isinstance(spec["notes"], list) and all(isinstance(n, str) for n in spec["notes"]), where,
          "'notes' must be a list of strings")
    _need(isinstance(spec["footer"], dict), where, "'footer' must be an object")
    _need(isinstance(spec["decimals"], int) and spec["decimals"] >= 0, where, "'decimals' must be an int >= 0")
    _need(isinstance(spec["columns"], list) and spec["columns"], where, "'columns' must be a non-empty list")
    _need(isinstance(spec["derived"], list), where, "'derived' must be a list")
    _need(isinstance(spec["rows"], list) and spec["rows"], where, "'rows' must be a non-empty list")
    _check_columns(spec, where)
    _check_rows(spec, where)
    return spec


# ---------------------------------------------------------------- values
def _as_value(value: Any) -> float | str:
    return value if isinstance(value, str) else float(value)


def dotted_get(data: Any, path: str, source: str) -> float | str:
    """`data` at a dotted path (list elements by index); a missing key or a non-scalar names path and file."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise TableError(f"value path {path!r} not found in {source} (no {part!r})")
    if isinstance(node, bool) or not isinstance(node, (int, float, str)):
        raise TableError(f"value path {path!r} in {source} is not a number or a string: {node!r}")
    return _as_value(node)


def read_metrics(path: str, cache: dict[str, Any], where: str) -> Any:
    if path not in cache:
        if not Path(path).is_file():
            raise TableError(f"{where}: metrics file not found: {path}")
        try:
            cache[path] = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TableError(f"{where}: metrics file {path} is not valid JSON: {exc}") from exc
    return cache[path]


def our_value(cell: dict[str, Any] | None, cache: dict[str, Any], where: str) -> Value:
    if not cell:
        return None
    if "text" in cell:
        return _as_value(cell["text"])
    if cell.get("metrics") is None:
        return None
    paths = cell["metrics"] if isinstance(cell["metrics"], list) else [cell["metrics"]]
    values = []
    for path in paths:
        data = read_metrics(path, cache, where)
        try:
            values.append(dotted_get(data, cell.get("value", "metrics.top1"), path))
        except TableError as exc:
            raise TableError(f"{where}: {exc}") from None
    if len(values) == 1 and not isinstance(cell["metrics"], list):
        return values[0]
    # Several runs in one cell (Table S3's "72.1/73.8"): one decimal each, joined.
    return cell.get("join", "/").join(fmt_value(round_half_up(v, 1), 1) for v in values)


def round_half_up(value: Value, decimals: int) -> Value:
    """Numbers rounded as shown (61.25 -> 61.3), so that every Δ agrees with the printed values."""
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def _minus(a: Value, b: Value) -> float | None:
    return a - b if isinstance(a, float) and isinstance(b, float) else None


def derive_reported(a: Reported | None, b: Reported | None) -> Reported | None:
    """a − b of two reported numbers; its source joins theirs, its confidence is the lower one."""
    if a is None or b is None or not (a.is_number and b.is_number):
        return None
    sources = a.source if a.source == b.source else f"{a.source} / {b.source}"
    confidence = max(a.confidence, b.confidence, key=CONFIDENCES.index)
    return Reported(float(a.value) - float(b.value), sources, confidence)


def compute_cells(spec: dict[str, Any], reported: pd.DataFrame) -> dict[str, dict[str, Cell]]:
    """Cells per row key and column key (base then derived); our numbers rounded as they are shown."""
    cache: dict[str, Any] = {}
    table = spec["id"].upper()
    out: dict[str, dict[str, Cell]] = {}
    for row in spec["rows"]:
        cells: dict[str, Cell] = {}
        for col in spec["columns"]:
            where = f"row {row['key']!r} column {col['key']!r}"
            ours = round_half_up(our_value(row["cells"].get(col["key"]), cache, where), _decimals(spec, col))
            cells[col["key"]] = Cell(ours, lookup(reported, table, row["key"], col["key"]))
        for col in spec["derived"]:
            a, b = (cells[k] for k in col["minus"])
            ours = round_half_up(_minus(a.ours, b.ours), _decimals(spec, col))
            cells[col["key"]] = Cell(ours, derive_reported(a.reported, b.reported))
        out[row["key"]] = cells
    return out


# ---------------------------------------------------------------- frame, notes, output
def _decimals(spec: dict[str, Any], col: dict[str, Any]) -> int:
    return int(col.get("decimals", spec["decimals"]))


def fmt_number(value: float, decimals: int, signed: bool = False) -> str:
    if round(value, decimals) == 0:
        value = 0.0  # no "-0.0"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def fmt_value(value: Value, decimals: int) -> str:
    if value is None:
        return NO_VALUE
    return fmt_number(value, decimals) if isinstance(value, float) else value


def fmt_cell(cell: Cell, decimals: int) -> list[str]:
    """[ours, reported, Δ] as shown."""
    rep = UNKNOWN
    if cell.reported is not None:
        rep = fmt_value(cell.reported.value, decimals) + (FLAG if cell.reported.flagged else "")
    delta = NO_VALUE if cell.delta is None else fmt_number(cell.delta, decimals, signed=True)
    return [fmt_value(cell.ours, decimals), rep, delta]


def build_frame(spec: dict[str, Any], cells: dict[str, dict[str, Cell]]) -> pd.DataFrame:
    """Formatted strings; columns (group label, part), the first one (row header, "")."""
    cols = spec["columns"] + spec["derived"]
    header = [(spec["row_header"], "")] + [(c["label"], p) for c in cols for p in PARTS]
    data = []
    for row in spec["rows"]:
        line = [row["label"]]
        for c in cols:
            line += fmt_cell(cells[row["key"]][c["key"]], _decimals(spec, c))
        data.append(line)
    return pd.DataFrame(data, columns=pd.MultiIndex.from_tuples(header))


def table_notes(spec: dict[str, Any], cells: dict[str, dict[str, Cell]]) -> list[str]:
    """The spec's notes, the † explanation with its sources, and the sources of all reported values.

    Only base columns are looked at: a derived reported value comes from two of them (and is flagged
    only when one of them is)."""
    base = [c["key"] for c in spec["columns"]]
    used = [row[k].reported for row in cells.values() for k in base if row[k].reported is not None]
    flagged = sorted({r.source for r in used if r.flagged})
    notes = list(spec["notes"])
    if flagged:
        notes.append(f"{FLAG} low-confidence reported value, not confirmed from the paper itself (source: "
                     f"{'; '.join(flagged)}); shown for reference only.")
    if used:
        sources = sorted({r.source for r in used})
        notes.append("Reported values from: " + "; ".join(sources) + ".")
    return notes


def footer_line(spec: dict[str, Any]) -> str:
    footer = {"config_hash": config_hash({k: v for k, v in spec.items() if k != "footer"}),
              "code_version": code_version(), **spec["footer"]}
    extra = [f"{k}: {v}" for k, v in footer.items() if k not in ("config_hash", "code_version")]
    return " · ".join([f"Config hash: {footer['config_hash']}", f"code version: {footer['code_version']}", *extra])


def full_caption(spec: dict[str, Any]) -> str:
    layout = RECONSTRUCTED if spec["reconstructed"] else OWN_LAYOUT
    return " ".join(p for p in (spec["caption"].strip(), layout, LEGEND) if p)


def latex_title(spec: dict[str, Any]) -> str:
    """The title without a leading "Table <id>:" (LaTeX numbers its tables itself), ending in a full stop."""
    title = re.sub(rf"^\s*Table\s+{re.escape(spec['id'])}\s*[:.]\s*", "", spec["title"], flags=re.IGNORECASE)
    title = title.strip()
    return title if not title or title[-1] in ".:;!?" else title + "."


def build_table(spec: dict[str, Any], reported: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """(frame, Markdown, LaTeX) of a validated spec."""
    cells = compute_cells(spec, reported)
    frame = build_frame(spec, cells)
    notes, footer, caption = table_notes(spec, cells), footer_line(spec), full_caption(spec)
    md = render_markdown(frame, spec["title"], caption, notes, footer)
    tex = render_latex(frame, spec["id"], latex_title(spec), caption, notes, footer, spec["latex_resize"])
    return frame, md, tex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="table spec: a JSON file or an inline JSON string")
    parser.add_argument("--reported", default="config/reported.csv", help="the paper's reported numbers (CSV)")
    parser.add_argument("--out-md", default=None, help="Markdown file to write")
    parser.add_argument("--out-tex", default=None, help="LaTeX file to write")


def run(args: argparse.Namespace) -> int:
    if not args.out_md and not args.out_tex:
        raise TableError("give --out-md and/or --out-tex")
    spec = load_spec(args.spec)
    _, md, tex = build_table(spec, load_reported(args.reported))
    for path, text in ((args.out_md, md), (args.out_tex, tex)):
        if path:
            write_text(path, text)
    print(f"[mokd] table {spec['id']}: {len(spec['rows'])} rows -> "
          f"{', '.join(p for p in (args.out_md, args.out_tex) if p)}", file=sys.stderr)
    return 0
