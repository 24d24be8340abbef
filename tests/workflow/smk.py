"""Running Snakemake from the tests: in the repository, bounded in time, with parsed job counts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run snakemake in the repository root; SIGKILL after `timeout` (it ignores SIGTERM while jobs run)."""
    cmd = ["timeout", "-s", "KILL", str(timeout), SNAKEMAKE, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def job_counts(output: str, fold_pairs: bool = True) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}; {} when there is nothing to do. With
    `fold_pairs`, the pairs' evaluation-group rules `evaluate_<group>__<pair>` count as one key
    `evaluate_<group>__pairs`."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Job stats:"):
            for row in lines[i + 3 :]:
                m = re.match(r"^(\S+)\s+(\d+)$", row.strip())
                if not m:
                    break
                rule = m.group(1)
                if fold_pairs and "__" in rule:
                    rule = rule.split("__")[0] + "__pairs"
                counts[rule] = counts.get(rule, 0) + int(m.group(2))
            break
    counts.pop("total", None)
    return counts


def write_config(path: Path, base: str, results: Path, **extra: object) -> Path:
    """A config extending `base` whose results go to `results` (so tests never touch results/)."""
    cfg = {"base": base, "scale": {"results": str(results)}, **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path
