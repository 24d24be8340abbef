"""Reading the pipe tables of a generated Markdown table file (shared by the table and workflow tests)."""

from __future__ import annotations

import re


def pipe_tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown document: rows of cells, header first (separator lines dropped)."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            if not re.match(r"^\|[-:| ]+\|$", line):
                tables[-1].append([p.strip() for p in line.strip("|").split("|")])
        previous = line
    return tables
