"""`python -m mokd verify [RESULTS ...]`: what in a results folder no longer matches what it was built from.

One line per finding, with the command that makes it right again:

* a table file (`tables/table_*.md`, `.tex`, `.html`) whose recorded inputs (mokd/tables/inputs.py) are
  gone or changed since it was built: a metrics file edited, rerun, or restored from an older copy
  (`cp -p` keeps the old time, so Snakemake, which goes by times, does not rebuild the table);
* a metrics file (any JSON with `provenance.checkpoint_sha256`: evaluations, figures, Table S3's cost)
  that is damaged, no longer matches its seal (edited after its job wrote it, mokd/seal.py) or its
  config hash, or whose checkpoint (the exported teacher; a run's summary for the cost figures) is gone
  or has changed since it was evaluated (a retrained run).

Exit status 0 when everything matches, 9 otherwise. `snakemake verify` runs it on the scale's folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mokd.config import config_hash
from mokd.provenance import file_sha256
from mokd.seal import seal_matches
from mokd.tables import inputs

MISMATCH = 9  # the exit status when something no longer matches (mokd/cli.py)
TABLE_SUFFIXES = (".md", ".tex", ".html")
METRICS_FOLDERS = ("eval", "figures")  # where a JSON that does not parse is a damaged metrics file


@dataclass(frozen=True)
class Finding:
    """Something that no longer matches: the file, what is wrong, the command that rebuilds it."""

    kind: str
    path: Path
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.kind} {self.path}: {self.problem}; {self.fix}"


def _rebuild(path: Path) -> str:
    return f"rebuild: snakemake -f {shlex.quote(str(path))}"


def _remake(path: Path) -> str:
    return f"delete it and make it again: rm {shlex.quote(str(path))} && snakemake {shlex.quote(str(path))}"


def _sha(path: Path, memo: dict[Path, str]) -> str:
    if path not in memo:
        memo[path] = file_sha256(path)
    return memo[path]


def _locate(recorded: str, metrics: Path) -> Path | None:
    """A checkpoint path as a metrics file records it (as given to its job: relative to where Snakemake
    ran): as it is, else under a folder above the metrics file."""
    candidates = [Path(recorded)] + [folder / recorded for folder in metrics.resolve().parents]
    return next((c for c in candidates if c.is_file()), None)


def check_table(table: Path, memo: dict[Path, str]) -> list[Finding]:
    entries = inputs.recorded(table)
    if entries is None:
        return [Finding("stale table", table, "it records no inputs (built before tables recorded them)",
                        _rebuild(table))]
    changed = []
    for entry in entries:
        source = table.parent / entry["path"]
        if not source.is_file():
            changed.append(f"{entry['path']} is gone")
        elif _sha(source.resolve(), memo) != entry["sha256"]:
            changed.append(f"{entry['path']} changed")
    if not changed:
        return []
    shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
    return [Finding("stale table", table, f"{shown} since it was built", _rebuild(table))]


def check_metrics(path: Path, record: Any, memo: dict[Path, str]) -> list[Finding]:
    provenance = record["provenance"]
    if seal_matches(record) is False:
        return [Finding("bad metrics", path, "changed after its job wrote it (its content no longer matches "
                        "provenance.content_sha256)", _remake(path))]
    problems = []
    if "settings" in provenance and provenance.get("config_hash") != config_hash(provenance["settings"]):
        problems.append("its settings no longer match its config hash")
    for recorded, sha in zip(record.get("checkpoints", []), provenance["checkpoint_sha256"]):
        found = _locate(recorded, path)
        if found is None:
            problems.append(f"its checkpoint {recorded} is gone")
        elif _sha(found.resolve(), memo) != sha:
            problems.append(f"its checkpoint {recorded} changed since it was evaluated")
    return [Finding("stale metrics", path, "; ".join(problems), _rebuild(path))] if problems else []


def _read_json(path: Path) -> tuple[Any, bool]:
    """(content, True), or (None, False) for a file that is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), True
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, False


def verify(root: Path) -> tuple[list[Finding], int, int]:
    """The findings under `root` (metrics files first: a table is stale because of them), and how many
    table and metrics files were checked."""
    memo: dict[Path, str] = {}
    findings: list[Finding] = []
    n_metrics = 0
    for path in sorted(root.rglob("*.json")):
        record, ok = _read_json(path)
        if not ok:
            if any(part in METRICS_FOLDERS for part in path.relative_to(root).parts):
                findings.append(Finding("bad metrics", path, "damaged (not valid JSON)", _remake(path)))
                n_metrics += 1
            continue
        provenance = record.get("provenance") if isinstance(record, dict) else None
        if isinstance(provenance, dict) and "checkpoint_sha256" in provenance:
            findings += check_metrics(path, record, memo)
            n_metrics += 1
    tables = sorted(p for p in root.rglob("table_*") if p.parent.name == "tables" and p.suffix in TABLE_SUFFIXES)
    findings += _per_table(sorted((f for t in tables for f in check_table(t, memo)), key=_table_of))
    return findings, len(tables), n_metrics


def _table_of(finding: Finding) -> tuple[Path, str]:
    """The table job a table file comes from (table_t1.md, .tex, .html and table_t1_vs_paper.tex: one)."""
    return finding.path.parent, finding.path.stem.removesuffix("_vs_paper")


def _per_table(findings: list[Finding]) -> list[Finding]:
    """One finding per table and problem, named by its Markdown file (the others listed after it)."""
    merged: dict[tuple[tuple[Path, str], str], list[Finding]] = {}
    for finding in findings:
        merged.setdefault((_table_of(finding), finding.problem), []).append(finding)
    out = []
    for group in merged.values():
        first = min(group, key=lambda f: (f.path.suffix != ".md", f.path.name))
        others = sorted(f.path.name for f in group if f is not first)
        path = Path(f"{first.path} (and {', '.join(others)})") if others else first.path
        out.append(Finding(first.kind, path, first.problem, first.fix))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="*", default=["results"],
                        help="results folders to check (default: results, every scale)")


def run(args: argparse.Namespace) -> int:
    total = 0
    for folder in map(Path, args.results):
        if not folder.is_dir():
            raise FileNotFoundError(f"results folder not found: {folder}")
        findings, n_tables, n_metrics = verify(folder)
        for finding in findings:
            print(finding.line())
        verdict = (f"{len(findings)} {'does' if len(findings) == 1 else 'do'} not match" if findings
                   else "all match what they were built from")
        print(f"verify: {folder}: {n_tables} table files and {n_metrics} metrics files checked: {verdict}",
              file=sys.stderr)
        total += len(findings)
    if total:
        print("verify: run the commands above from the repository, with the --configfile of the run",
              file=sys.stderr)
    return MISMATCH if total else 0
