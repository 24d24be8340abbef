"""The paper's reported numbers: one CSV with a source and a confidence per value.

`config/reported.csv` has the columns `table,row,column,value,source,confidence`:
- `table`: the table id (T1..T6, S1..S3; compared upper-case);
- `row`, `column`: the keys the table spec uses; a row `<prefix>@*` matches every row key that starts
  with `<prefix>@` (e.g. `R50@*`: the DINO R50 baseline, which is the same run in every pair); an exact
  row always wins over a wildcard;
- `value`: a number (`72.1`) or a text as printed in the paper (`97+94`, `72.1/73.8`);
- `source`: where the number comes from; `confidence`: one of high, medium-high, medium, low (low values
  are shown flagged).
A value that is not known is left out of the file (the table then shows "n/a"); it is never guessed.
Blank lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COLUMNS = ("table", "row", "column", "value", "source", "confidence")
CONFIDENCES = ("high", "medium-high", "medium", "low")  # best first
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class TableError(ValueError):
    """Bad table input (spec, metrics file, reported CSV); the message names the file, row or key."""


@dataclass(frozen=True)
class Reported:
    """One reported value; `value` is a float when the CSV text is a plain number, else the text."""

    value: float | str
    source: str
    confidence: str

    @property
    def is_number(self) -> bool:
        return isinstance(self.value, float)

    @property
    def flagged(self) -> bool:
        return self.confidence == "low"


def parse_value(text: str) -> float | str:
    """A plain decimal number becomes a float; anything else ("97+94", "72.1/73.8") stays text."""
    text = text.strip()
    return float(text) if _NUMBER.match(text) else text


def _check_record(record: dict[str, str], where: str) -> None:
    for key in COLUMNS:
        if not record[key]:
            raise TableError(f"{where}: empty '{key}'")
    if record["value"].lower() in ("n/a", "na", "nan", "?", "-"):
        raise TableError(f"{where}: value {record['value']!r}: leave unknown values out of the file")
    if record["confidence"] not in CONFIDENCES:
        raise TableError(f"{where}: confidence {record['confidence']!r} is not one of {list(CONFIDENCES)}")
    if "*" in record["row"] and not (record["row"].endswith("@*") and record["row"].count("*") == 1):
        raise TableError(f"{where}: row {record['row']!r}: the only wildcard form is '<prefix>@*'")


def load_reported(path: str | Path) -> pd.DataFrame:
    """Read and validate the reported-number CSV; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"reported-number file not found: {path}")
    records: list[dict[str, str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        for fields in reader:
            line = reader.line_num
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            fields = [f.strip() for f in fields]
            if header is None:
                if tuple(fields) != COLUMNS:
                    raise TableError(f"{path}:{line}: header must be {','.join(COLUMNS)}, got {','.join(fields)}")
                header = fields
                continue
            if len(fields) != len(COLUMNS):
                raise TableError(f"{path}:{line}: expected {len(COLUMNS)} fields, got {len(fields)} ({fields})")
            record = dict(zip(COLUMNS, fields))
            _check_record(record, f"{path}:{line}")
            record["table"] = record["table"].upper()
            key = (record["table"], record["row"], record["column"])
            if key in seen:
                raise TableError(f"{path}:{line}: duplicate of line {seen[key]} for {key}")
            seen[key] = line
            records.append(record)
    if header is None:
        raise TableError(f"{path}: no header line ({','.join(COLUMNS)})")
    return pd.DataFrame(records, columns=list(COLUMNS), dtype=str)


def lookup(df: pd.DataFrame, table: str, row: str, column: str) -> Reported | None:
    """The reported value of one cell: the exact row, else a matching `<prefix>@*` row, else None."""
    hits = df[(df["table"] == table.upper()) & (df["column"] == column)]
    exact = hits[hits["row"] == row]
    if exact.empty:
        wild = hits[hits["row"].str.endswith("@*")]
        exact = wild[[row.startswith(r[:-1]) for r in wild["row"]]]
        if len(exact) > 1:  # the longest prefix is the most specific
            exact = exact.loc[[exact["row"].str.len().idxmax()]]
    if exact.empty:
        return None
    rec = exact.iloc[0]
    return Reported(parse_value(rec["value"]), rec["source"], rec["confidence"])
