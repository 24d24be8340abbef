"""The two views of a table, both in the paper's rows and columns, one value per cell.

- "ours": the regenerated table as the paper prints it: our value per cell (`mean ± std (n)` over
  seeds where a cell has several);
- "paper": the same shape, each cell the paper's published value and, in parentheses, Δ = ours − paper;
- "vs_random" (when cells have a reference, at the CPU scales): ours − a random initialisation of the
  same network, seed and protocol, paired by seed.

A derived column (`a − b` of two columns, e.g. MOKD − DINO) stands right after the later of its two
columns, as the paper prints "DINO, MOKD, Δ". The spec's caption keeps the scale and a short list of
the stand-in models; a trailing "Models: A = x; B = y." legend becomes a footnote list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from mokd.tables.cells import FLAG, NO_VALUE, UNKNOWN, Cell, fmt_reported, fmt_signed, fmt_value
from mokd.tables.marks import LEGEND as MARK_LEGEND
from mokd.tables.marks import MARK

OURS_HEADING = "Ours (regenerated)"
PAPER_HEADING = "Paper: published value (Δ = ours − paper)"
OURS_LEGEND = (f"One value per cell: ours, as mean ± std (n) over seeds where a cell has several runs; "
               f"{NO_VALUE}: no value of ours.")
PAPER_LEGEND = (f"Each cell: the paper's value and, in parentheses, Δ = ours − paper (ours rounded as shown "
                f"first); {UNKNOWN}: not known.")
GAIN_HEADING = "Ours − random initialisation (what pre-training added)"
GAIN_LEGEND = (f"Each cell: our value minus that of a random initialisation of the same network (the DINO "
               f"baseline's teacher before its first step), same seed and protocol; mean ± std (n) of the "
               f"per-seed differences where there are several seeds; {NO_VALUE}: no reference.")
FLAG_LEGEND = f" {FLAG}: low confidence (see the notes)."
MODELS_MARK = " Models: "


@dataclass(frozen=True)
class View:
    """One rendered view: a heading, a one-line legend and a frame of formatted strings (first column:
    the row labels, headed by the spec's row header)."""

    name: str
    heading: str
    legend: str
    frame: pd.DataFrame
    header: list[tuple[str, str]]  # (group, label) per column of the frame, for a two-row LaTeX header


def column_order(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Base columns in spec order; each derived column right after the later of its `minus` columns."""
    order = list(spec["columns"])
    for col in spec["derived"]:
        at = max(i for i, c in enumerate(order) if c["key"] in col["minus"])
        while at + 1 < len(order) and order[at + 1] in spec["derived"]:
            at += 1  # after derived columns already placed there
        order.insert(at + 1, col)
    return order


def _decimals(spec: dict[str, Any], col: dict[str, Any]) -> int:
    return int(col.get("decimals", spec["decimals"]))


def _first_word(label: str) -> tuple[str, str] | None:
    word, _, rest = label.partition(" ")
    return (word.rstrip(",:"), rest.lstrip(", ")) if rest.strip() else None


def _parenthesis(label: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(.*\S)\s+\(([^()]+)\)", label)
    return (m.group(2), m.group(1)) if m else None


def column_groups(labels: list[str]) -> list[tuple[str, str]]:
    """(group, label) per column: neighbours sharing a first word ("k-NN DINO", "k-NN MOKD") are grouped
    under it, else neighbours sharing a final parenthesis ("R50 (R50–Eff-b0)", "Eff-b0 (R50–Eff-b0)");
    a column with no such neighbour has the group ""."""
    out = [("", label) for label in labels]
    for split in (_first_word, _parenthesis):
        parts = [split(label) for label in labels]
        for i, part in enumerate(parts):
            near = [parts[j] for j in (i - 1, i + 1) if 0 <= j < len(parts)]
            if not out[i][0] and part is not None and any(p is not None and p[0] == part[0] for p in near):
                out[i] = part
    return out


def _frame(spec: dict[str, Any], cells: dict[str, dict[str, Cell]], show: Callable[[Cell, int], str]
           ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    cols = column_order(spec)
    header = [spec["row_header"]] + [c["label"] for c in cols]
    data = [[row["label"]] + [show(cells[row["key"]][c["key"]], _decimals(spec, c)) for c in cols]
            for row in spec["rows"]]
    frame = pd.DataFrame(data)
    frame.columns = pd.Index(header)
    return frame, [("", spec["row_header"])] + column_groups([c["label"] for c in cols])


def _has_ours(cell: Cell) -> bool:
    return cell.ours is not None


def _has_delta(cell: Cell) -> bool:
    return cell.delta is not None


def _has_gain(cell: Cell) -> bool:
    return cell.gain is not None


def _marked(show: Callable[[Cell, int], str], uses_ours: Callable[[Cell], bool]) -> Callable[[Cell, int], str]:
    """`show`, with the collapse mark after a cell whose shown value uses our value from a collapsed teacher."""
    return lambda cell, d: show(cell, d) + (MARK if cell.collapsed and uses_ours(cell) else "")


def _legend(legend: str, cells: dict[str, dict[str, Cell]], uses_ours: Callable[[Cell], bool]) -> str:
    marked = any(c.collapsed and uses_ours(c) for row in cells.values() for c in row.values())
    return legend + (MARK_LEGEND if marked else "")


def build_views(spec: dict[str, Any], cells: dict[str, dict[str, Cell]]) -> list[View]:
    """[ours, paper] and, when a cell has a reference, [gain]: the same rows and columns, one value per cell.
    A value that uses ours from a collapsed teacher (ours, Δ, the gain) is marked in every view."""
    ours = _frame(spec, cells, _marked(lambda cell, d: fmt_value(cell.ours, d), _has_ours))
    paper = _frame(spec, cells, _marked(fmt_reported, _has_delta))
    flagged = any(c.reported is not None and c.reported.flagged for row in cells.values() for c in row.values())
    legend = _legend(PAPER_LEGEND + (FLAG_LEGEND if flagged else ""), cells, _has_delta)
    views = [View("ours", OURS_HEADING, _legend(OURS_LEGEND, cells, _has_ours), *ours),
             View("paper", PAPER_HEADING, legend, *paper)]
    if any(c.gain is not None for row in cells.values() for c in row.values()):
        gain = _frame(spec, cells, _marked(lambda cell, d: fmt_signed(cell.gain, d), _has_gain))
        views.append(View("vs_random", GAIN_HEADING, _legend(GAIN_LEGEND, cells, _has_gain), *gain))
    return views


def split_caption(caption: str) -> tuple[str, list[str]]:
    """(brief caption, model legend items): "... Models: R50 = x; R18 = y." -> the caption with the model
    labels only ("Stand-in models (listed below): R50, R18.") and ["R50 = x", "R18 = y"]."""
    head, sep, models = caption.strip().partition(MODELS_MARK.strip() + " ")
    if not sep or not models:
        return caption.strip(), []
    items = [m.strip() for m in models.strip().rstrip(".").split("; ") if m.strip()]
    names = [m.split(" = ", 1)[0] for m in items]
    brief = f"{head.strip()} Stand-in models (listed below): {', '.join(names)}.".strip()
    return brief, items
