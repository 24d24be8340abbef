"""Build one results table (Markdown, LaTeX, HTML): our values, and the paper's reported values and Δ.

`python -m mokd table --spec SPEC [--reported config/reported.csv] --out-md X.md --out-tex X.tex
 [--out-tex-vs-paper X_vs_paper.tex] [--out-html X.html]`

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
               "cells": {"knn_dino": {"metrics": "results/.../knn.json", "value": "metrics.top1"}}}],
     "runs": [{"name": "dino_r50", "seed": 0, "log": "results/.../log.jsonl", "out_dim": 1024,   # optional
               "models": {"r50": {"label": "R50", "teacher": "results/.../export/teacher_r50.pt"}}}]}

A cell reads our value from its metrics JSON at the dotted path `value` (default "metrics.top1"; a
list element by its index); the value is a number or a text ("97+94"). A `metrics` list reads the
value from each file: `"join": "mean"` takes them as seeds of one run and shows `mean ± std (n)`
(sample std); any other `join` (default "/") joins them as text ("72.1/73.8", several runs).
`"metrics": null`, or no cell, means no value of ours ("—"); `"text": <literal>` gives our value
directly (instead of `metrics`). Relative metrics paths are relative to the current directory.

The table has two views in the spec's rows and columns (`mokd.tables.views`), one value per cell:
ours, and the paper's reported value with Δ = ours − reported in parentheses. A cell may name a
`reference` (one metrics file per seed, paired with its own by position: a random initialisation of
the same network); a third view then shows ours − reference, mean ± std (n) of the paired
differences (in the Markdown, the HTML and as a second float of the LaTeX file). Reported values come
from the CSV (`mokd.tables.reported`), looked up by (id upper-case, row key, column key); unknown ones
show "n/a". Δ needs two numbers; our numbers are first rounded half-up to the shown decimals, so Δ
matches the page. A derived column computes `a − b` of its two `minus` columns (base or earlier
derived), for ours and for reported separately, and stands right after the later of the two; its
reported value takes the lowest confidence of the two. Where both columns hold the same seeds, our
derived value is mean ± std (n) of the per-seed differences (its mean: the difference of the shown means). Low-confidence reported values are flagged
with † and explained, with their source, in the notes. A cell whose metrics file (in any seed) records
a teacher of `runs` that ended collapsed (by its log: mokd/collapse.py) is marked ‡ in every view, as
is every derived value using it, and a note names the collapsed teachers (mokd/tables/marks.py). A
caption ending in "Models: A = x; B = y." keeps the model names and moves that legend to a list under the table. Footer defaults: code_version of this checkout, config_hash of the spec itself.
Bad input (spec, metrics, reported CSV) exits with code 2 and a message naming the file/row/column; a
damaged metrics file, or one edited after its job wrote it (its seal: mokd/seal.py), is refused naming
the file to delete and the command that makes it again. Every file written ends with a comment listing
the content hash of each metrics file read (mokd/tables/inputs.py), which `python -m mokd verify` checks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mokd.atomic import write_text
from mokd.config import ConfigError, config_hash, validate
from mokd.provenance import code_version
from mokd.tables import inputs
from mokd.tables.cells import FLAG, Cell, Value, fmt_value, number_of, round_half_up
from mokd.tables.marks import CollapseMarks
from mokd.tables.metrics import MetricsFiles
from mokd.tables.reported import CONFIDENCES, Reported, TableError, load_reported, lookup
from mokd.tables.render import render_html, render_latex, render_markdown
from mokd.tables.stats import Stat, aggregate
from mokd.tables.views import View, build_views, split_caption

RECONSTRUCTED = "Layout reconstructed from the protocols (the main paper's table was not available as text)."
OWN_LAYOUT = "Layout: the rows and columns of the paper's own table."
MEAN = "mean"  # the `join` of a cell whose metrics files are seeds of one run: mean ± std (n)


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


def _check_columns(spec: dict[str, Any], where: str) -> None:
    keys = [col["key"] for col in spec["columns"]]
    for i, col in enumerate(spec["derived"]):
        bad = [k for k in col["minus"] if k not in keys]
        _need(not bad, f"{where} derived[{i}]", f"'minus' names unknown column(s) {bad}; known before it: {keys}")
        keys.append(col["key"])
    dup = sorted({k for k in keys if keys.count(k) > 1})
    _need(not dup, where, f"duplicate column key(s) {dup}")


def _check_rows(spec: dict[str, Any], where: str) -> None:
    base = {c["key"] for c in spec["columns"]}
    keys = [row["key"] for row in spec["rows"]]
    for i, row in enumerate(spec["rows"]):
        for col, cell in row["cells"].items():
            at = f"{where} rows[{i}] ({row['key']!r}) cell {col!r}"
            _need(col in base, at, f"unknown column; columns: {sorted(base)}")
            _need(not (cell.get("metrics") and "text" in cell), at, "give 'metrics' or 'text', not both")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    _need(not dup, where, f"duplicate row key(s) {dup}")


def validate_spec(spec: Any, where: str = "(inline)") -> dict[str, Any]:
    """Check keys and types against mokd/schemas/table_spec.yaml, filling the optional keys' defaults,
    then the cross-references a schema cannot express. Errors name the offending key."""
    try:
        spec = validate(spec, "table_spec", label=f"spec {where} key")
    except ConfigError as exc:
        raise TableError(str(exc)) from None
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


def file_values(paths: list[str], value: str, files: MetricsFiles, where: str) -> list[float | str]:
    """The value at dotted path `value` of each metrics file, in order."""
    values = []
    for path in paths:
        data = files.read(path, where)
        try:
            values.append(dotted_get(data, value, path))
        except TableError as exc:
            raise TableError(f"{where}: {exc}") from None
    return values


def our_value(cell: dict[str, Any] | None, files: MetricsFiles, where: str) -> Value:
    if not cell:
        return None
    if "text" in cell:
        return _as_value(cell["text"])
    if cell.get("metrics") is None:
        return None
    paths = cell["metrics"] if isinstance(cell["metrics"], list) else [cell["metrics"]]
    values = file_values(paths, cell.get("value", "metrics.top1"), files, where)
    if len(values) == 1 and not isinstance(cell["metrics"], list):
        return values[0]
    if cell.get("join") == MEAN:  # several seeds of one run: mean ± std (n)
        numbers = [v for v in values if isinstance(v, float)]
        if len(numbers) != len(values):
            raise TableError(f"{where}: 'join': 'mean' needs numbers, got {values!r}")
        return aggregate(numbers)
    # Several runs in one cell (Table S3's "72.1/73.8"): one decimal each, joined.
    return cell.get("join", "/").join(fmt_value(round_half_up(v, 1), 1) for v in values)


def gain_over_reference(cell: dict[str, Any] | None, files: MetricsFiles, where: str) -> Value:
    """ours − reference per seed (paired by position), as one number or mean ± std (n); None without a
    reference. Both sides need one number per file and as many files."""
    if not cell or not cell.get("reference") or cell.get("metrics") is None:
        return None
    ref = cell["reference"]
    paths = cell["metrics"] if isinstance(cell["metrics"], list) else [cell["metrics"]]
    if len(ref["metrics"]) != len(paths):
        raise TableError(f"{where}: 'reference' lists {len(ref['metrics'])} metrics files for {len(paths)} of ours; "
                         "they are paired by seed")
    value = cell.get("value", "metrics.top1")
    ours = file_values(paths, value, files, where)
    theirs = file_values(ref["metrics"], ref.get("value", value), files, where)
    if not all(isinstance(v, float) for v in ours + theirs):
        raise TableError(f"{where}: a 'reference' needs numbers, got {ours!r} and {theirs!r}")
    return aggregate([float(a) - float(b) for a, b in zip(ours, theirs)])


def seed_numbers(cell: dict[str, Any] | None, files: MetricsFiles, where: str) -> tuple[float, ...]:
    """The per-seed numbers of a `join: mean` cell (for paired differences); () for any other cell."""
    if not cell or cell.get("join") != MEAN or not isinstance(cell.get("metrics"), list):
        return ()
    values = file_values(cell["metrics"], cell.get("value", "metrics.top1"), files, where)
    return tuple(float(v) for v in values) if all(isinstance(v, float) for v in values) else ()


def _paired(a: Cell, b: Cell) -> tuple[float, ...]:
    """a − b per seed, when both cells hold the same number of seeds; () otherwise."""
    return tuple(p - q for p, q in zip(a.seeds, b.seeds)) if len(a.seeds) == len(b.seeds) else ()


def _minus(a: Cell, b: Cell, paired: tuple[float, ...], decimals: int) -> Value:
    """a − b of two cells as shown: the difference of their shown numbers (a seed Stat by its mean), so
    that it agrees with the page; over several seeds, ± the std of the per-seed differences `paired`."""
    x, y = number_of(a.ours), number_of(b.ours)
    if x is None or y is None:
        return None
    spread = aggregate(list(paired)) if len(paired) > 1 else None
    if isinstance(spread, Stat):
        return round_half_up(Stat(x - y, spread.std, spread.n), decimals)
    return round_half_up(x - y, decimals)


def derive_reported(a: Reported | None, b: Reported | None) -> Reported | None:
    """a − b of two reported numbers; its source joins theirs, its confidence is the lower one."""
    if a is None or b is None or not (a.is_number and b.is_number):
        return None
    sources = a.source if a.source == b.source else f"{a.source} / {b.source}"
    confidence = max(a.confidence, b.confidence, key=CONFIDENCES.index)
    return Reported(float(a.value) - float(b.value), sources, confidence)


def compute_cells(spec: dict[str, Any], reported: pd.DataFrame, files: MetricsFiles,
                  marks: CollapseMarks | None = None) -> dict[str, dict[str, Cell]]:
    """Cells per row key and column key (base then derived); our numbers rounded as they are shown; a cell
    from a collapsed teacher (`marks`), or derived from one, flagged `collapsed`."""
    table = spec["id"].upper()
    marks = marks or CollapseMarks([])
    out: dict[str, dict[str, Cell]] = {}
    for row in spec["rows"]:
        cells: dict[str, Cell] = {}
        for col in spec["columns"]:
            where = f"row {row['key']!r} column {col['key']!r}"
            spec_cell, d = row["cells"].get(col["key"]), _decimals(spec, col)
            ours = round_half_up(our_value(spec_cell, files, where), d)
            gain = round_half_up(gain_over_reference(spec_cell, files, where), d)
            seeds = seed_numbers(spec_cell, files, where)
            collapsed = marks.reads_collapsed(spec_cell, files, where)
            cells[col["key"]] = Cell(ours, lookup(reported, table, row["key"], col["key"]), gain, seeds, collapsed)
        for col in spec["derived"]:
            a, b = (cells[k] for k in col["minus"])
            paired = _paired(a, b)
            ours = _minus(a, b, paired, _decimals(spec, col))
            cells[col["key"]] = Cell(ours, derive_reported(a.reported, b.reported), None, paired,
                                     a.collapsed or b.collapsed)
        out[row["key"]] = cells
    return out


# ---------------------------------------------------------------- views, notes, output
def _decimals(spec: dict[str, Any], col: dict[str, Any]) -> int:
    return int(col.get("decimals", spec["decimals"]))


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


def full_caption(spec: dict[str, Any]) -> tuple[str, list[str]]:
    """(caption: the spec's, brief, and the layout it follows; the model legend as footnote items)."""
    brief, models = split_caption(spec["caption"])
    layout = RECONSTRUCTED if spec["reconstructed"] else OWN_LAYOUT
    return " ".join(p for p in (brief, layout) if p), models


def latex_title(spec: dict[str, Any]) -> str:
    """The title without a leading "Table <id>:" (LaTeX numbers its tables itself), ending in a full stop."""
    title = re.sub(rf"^\s*Table\s+{re.escape(spec['id'])}\s*[:.]\s*", "", spec["title"], flags=re.IGNORECASE)
    title = title.strip()
    return title if not title or title[-1] in ".:;!?" else title + "."


@dataclass(frozen=True)
class Rendered:
    """A built table: its views (ours, paper[, gain over the reference]), every file's text, and the
    content hash of each metrics file it read (by path as the spec names it)."""

    views: list[View]
    md: str
    tex: str
    tex_vs_paper: str
    html: str
    inputs: dict[str, str]


def build_table(spec: dict[str, Any], reported: pd.DataFrame) -> Rendered:
    """The views and renderings of a validated spec."""
    files, marks = MetricsFiles(), CollapseMarks(spec["runs"])
    cells = compute_cells(spec, reported, files, marks)
    views = build_views(spec, cells)
    collapse = [note] if (note := marks.note()) else []
    notes, footer = [*table_notes(spec, cells), *collapse], footer_line(spec)
    caption, models = full_caption(spec)
    md = render_markdown(spec["title"], caption, views, notes, models, footer)
    page = render_html(spec["title"], caption, views, notes, models, footer)
    ours, paper = views[:2]
    title, resize = latex_title(spec), spec["latex_resize"]
    model_note = [f"Models: {'; '.join(models)}."] if models else []
    tex = render_latex(ours, spec["id"], title, caption, [ours.legend, *spec["notes"], *collapse, *model_note, footer],
                       resize)
    for view in views[2:]:  # the gain over the random initialisation, a float of its own in the same file
        tex += "\n" + render_latex(view, f"{spec['id']}_{view.name}", f"{title} {view.heading}.", caption,
                                   [view.legend, *collapse, *model_note, footer], resize)
    tex_paper = render_latex(paper, f"{spec['id']}_vs_paper", f"{title} Published values and Δ.", caption,
                             [paper.legend, *notes, *model_note, footer], resize)
    return Rendered(views, md, tex, tex_paper, page, files.hashes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="table spec: a JSON file or an inline JSON string")
    parser.add_argument("--reported", default="config/reported.csv", help="the paper's reported numbers (CSV)")
    parser.add_argument("--out-md", default=None, help="Markdown file to write")
    parser.add_argument("--out-tex", default=None, help="LaTeX file to write (our values)")
    parser.add_argument("--out-tex-vs-paper", default=None,
                        help="LaTeX file to write: the paper's values and Δ, in the same rows and columns")
    parser.add_argument("--out-html", default=None, help="HTML page to write (both views; for the report)")


def run(args: argparse.Namespace) -> int:
    outputs = (args.out_md, args.out_tex, args.out_tex_vs_paper, args.out_html)
    if not any(outputs):
        raise TableError("give at least one of --out-md, --out-tex, --out-tex-vs-paper, --out-html")
    spec = load_spec(args.spec)
    built = build_table(spec, load_reported(args.reported))
    for path, text in zip(outputs, (built.md, built.tex, built.tex_vs_paper, built.html)):
        if path:
            write_text(path, text + inputs.block(built.inputs, path))  # what it was built from (verify)
    print(f"[mokd] table {spec['id']}: {len(spec['rows'])} rows -> {', '.join(p for p in outputs if p)}",
          file=sys.stderr)
    return 0
