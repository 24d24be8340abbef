"""Every shell command of the docs runs as written.

Each ```bash block of README.md, config/README.md, docs/*.md and results/README.md is preceded by a
marker saying how it is tested:

    <!-- doc-test: dry-run -->       every command runs with its dry-run switch: Snakemake's `-n`,
                                     `--dry-run` of `python -m mokd pretrain` and of the benchmarks,
                                     `-n` passed on by scripts/run.sh, `--collect-only` by scripts/test.sh
                                     (the commands that need a cluster, ImageNet or hours of CPU)
    <!-- doc-test: run -->           every command runs as written
    <!-- doc-test: skip: REASON -->  not run, with the reason

In both runnable modes the user's own files the docs name are provided: `my_paper.yaml` (a paper-scale
config: the rehearsal's, config/rehearsal.yaml), `my_paths.yaml` (dataset paths), `run.yaml` (a
pre-training config) and the folder `runs/`. The block runs as one bash script in the repository root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "config/README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
        "results/README.md"]
MARKER = re.compile(r"^<!-- doc-test: (dry-run|run|skip: .+?) -->$")
FENCE = re.compile(r"^```(bash|sh|shell|console)\s*$")
# The dry-run switch of each command the docs use (matched on the command's first words).
DRY_RUN = [
    (re.compile(r"^snakemake\b"), "-n"),
    (re.compile(r"^python -m mokd pretrain\b"), "--dry-run"),
    (re.compile(r"^(\.venv/bin/)?python benchmarks/\w+\.py\b"), "--dry-run"),
    (re.compile(r"^bash scripts/run\.sh\b"), "-n"),
    (re.compile(r"^bash scripts/test\.sh\b"), "--collect-only -q"),
]


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    mode: str | None
    text: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def shell_blocks() -> list[Block]:
    out = []
    for name in DOCS:
        lines = (REPO / name).read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if FENCE.match(lines[i]):
                start = i
                prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                marker = MARKER.match(prev)
                i += 1
                body = []
                while i < len(lines) and not lines[i].startswith("```"):
                    body.append(lines[i])
                    i += 1
                out.append(Block(name, start + 1, marker.group(1) if marker else None, "\n".join(body)))
            i += 1
    return out


def commands(text: str) -> list[str]:
    """The block's lines with continuations joined (comments kept as they are)."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return joined


def strip_comment(command: str) -> tuple[str, str]:
    """(command, trailing comment): a `#` outside quotes, after a space, starts the comment."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip(), command[i:]
    return command.rstrip(), ""


def as_dry_run(command: str) -> str:
    code, comment = strip_comment(command)
    bare = re.sub(r"^(\w+=\S+\s+)+", "", code.strip())  # VAR=value prefixes
    for pattern, switch in DRY_RUN:
        if pattern.match(bare):
            if bare.startswith("bash scripts/test.sh"):
                code = f"MOKD_SKIP_SLURM=1 {code}"  # its SLURM cluster is the test session's
            return f"{code} {switch} {comment}".rstrip()
    return command


def user_files(tmp: Path, fashion_root: Path) -> dict[str, str]:
    """The files the docs ask a user to write, under `tmp`."""
    (tmp / "my_paper.yaml").write_text(yaml.safe_dump({"base": "config/rehearsal.yaml",
                                                      "scale": {"results": str(tmp / "results")}}))
    (tmp / "my_paths.yaml").write_text(yaml.safe_dump({"datasets": {
        role: {"spec": {"root": "data/paper_fixtures/imagenet"}} for role in ("pretrain", "train", "val")}}))
    (tmp / "run.yaml").write_text(yaml.safe_dump({
        "data": {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 4},
        "models": [{"name": "r50", "backbone": {"arch": "resnet50"}}]}))
    return {"my_paper.yaml": str(tmp / "my_paper.yaml"), "my_paths.yaml": str(tmp / "my_paths.yaml"),
            "run.yaml": str(tmp / "run.yaml"), "runs/": f"{tmp}/runs/", "report.html": str(tmp / "report.html")}


def script(block: Block, files: dict[str, str]) -> str:
    lines = commands(block.text)
    if block.mode == "dry-run":
        lines = [as_dry_run(ln) for ln in lines]
    text = "\n".join(lines)
    for name, path in files.items():
        text = re.sub(rf"(?<![\w/.]){re.escape(name)}", path, text)
    return "set -euo pipefail\n" + text + "\n"


BLOCKS = shell_blocks()


def test_every_shell_block_says_how_it_is_tested() -> None:
    unmarked = [b.id for b in BLOCKS if b.mode is None]
    assert not unmarked, f"shell blocks without a <!-- doc-test: ... --> marker: {unmarked}"
    assert len(BLOCKS) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode and not b.mode.startswith("skip")], ids=lambda b: b.id)
def test_the_commands_of_the_docs_run(block: Block, tmp_path: Path, fashion_root: Path) -> None:
    files = user_files(tmp_path, fashion_root)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    body = script(block, files)
    proc = subprocess.run(["timeout", "-s", "KILL", "600", "bash", "-c", body], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{block.id} ({block.mode}):\n{body}\n--- output:\n{(proc.stdout + proc.stderr)[-4000:]}"


def test_dry_run_switches() -> None:
    assert as_dry_run("snakemake table_s2 --configfile my_paper.yaml   # S2") == \
        "snakemake table_s2 --configfile my_paper.yaml -n # S2"
    assert as_dry_run("python -m mokd pretrain --config run.yaml --out runs/x") == \
        "python -m mokd pretrain --config run.yaml --out runs/x --dry-run"
    assert as_dry_run(".venv/bin/python benchmarks/learning_probe.py --models r50 vit_s   # a MOKD pair") == \
        ".venv/bin/python benchmarks/learning_probe.py --models r50 vit_s --dry-run # a MOKD pair"
    assert as_dry_run("export X=1") == "export X=1"
    assert as_dry_run("bash scripts/test.sh") == "MOKD_SKIP_SLURM=1 bash scripts/test.sh --collect-only -q"
    assert commands("a \\\n  b\nc") == ["a    b", "c"]
