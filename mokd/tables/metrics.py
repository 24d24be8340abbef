"""The metrics files a table reads: each parsed once, its content hash kept (the table file records it,
for `python -m mokd verify`), and refused, naming what to do, when it is damaged or was edited after
its job wrote it (its seal, mokd/seal.py)."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from mokd.seal import seal_matches
from mokd.tables.reported import TableError


def rerun_hint(path: str) -> str:
    """What to do about a bad metrics file: delete it, and the command that makes it again."""
    return (f"delete it and run its job again: snakemake {shlex.quote(path)} (with your --configfile), then the "
            "table's target")


class MetricsFiles:
    """Parsed metrics files by path (as the spec names them) and `hashes`, their content as read."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.hashes: dict[str, str] = {}

    def read(self, path: str, where: str) -> Any:
        if path in self.data:
            return self.data[path]
        if not Path(path).is_file():
            raise TableError(f"{where}: metrics file not found: {path}")
        raw = Path(path).read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TableError(f"{where}: metrics file {path} is damaged (not valid JSON: {exc}): "
                             f"{rerun_hint(path)}") from exc
        if seal_matches(data) is False:
            raise TableError(f"{where}: metrics file {path} was changed after its job wrote it (its content no "
                             f"longer matches provenance.content_sha256): {rerun_hint(path)}")
        self.data[path] = data
        self.hashes[path] = hashlib.sha256(raw).hexdigest()[:16]
        return data
