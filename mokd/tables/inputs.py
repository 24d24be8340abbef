"""What a table was built from, recorded in each of its files: the content hash of every metrics file it
read, with the file's path relative to the table's folder, in a comment at the end (invisible in the
rendered Markdown, HTML and PDF):

    <!-- mokd-table-inputs (sha256 of each metrics file read; path relative to this file)
    {"sha256": "3f2a...", "path": "../eval/dino_r50/seed0/r50/knn.json"}
    -->

(`% ` before each line in LaTeX). `python -m mokd verify` compares them with the files as they are now.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

MARK = "mokd-table-inputs"
HEADER = f"{MARK} (sha256 of each metrics file read; path relative to this file)"


def entries(hashes: Mapping[str, str], table_file: str | Path) -> list[dict[str, str]]:
    """One entry per metrics file: its hash and its path relative to the table file's folder."""
    folder = Path(table_file).resolve().parent
    return [{"sha256": sha, "path": os.path.relpath(Path(path).resolve(), folder)}
            for path, sha in sorted(hashes.items())]


def block(hashes: Mapping[str, str], table_file: str | Path) -> str:
    """The comment to append to `table_file` (its syntax from the file's suffix)."""
    # "--" may not appear inside an HTML comment: written as the JSON escape "-\u002d", read back as "--"
    lines = [HEADER, *(json.dumps(e, ensure_ascii=False).replace("--", "-\\u002d")
                       for e in entries(hashes, table_file))]
    if Path(table_file).suffix == ".tex":
        return "".join(f"% {line}\n" for line in lines)
    return "\n<!-- " + "\n".join(lines) + "\n-->\n"


def recorded(table_file: str | Path) -> list[dict[str, str]] | None:
    """The entries recorded in a table file; None when it records none (built before they were)."""
    lines = Path(table_file).read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if MARK in line]
    if not starts:
        return None
    out = []
    for line in lines[starts[-1] + 1:]:
        text = line.removeprefix("% ").strip()
        if not text.startswith("{"):
            break
        out.append(json.loads(text))
    return out
