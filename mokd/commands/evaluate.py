"""`python -m mokd evaluate [--checkpoint T] --plan JSON`: several evaluation protocols, of one teacher or
of each teacher of a pair, in one process.

The workflow's evaluation groups (`scale.evaluation_groups`, workflow/rules/evaluate.smk) run the
protocols of a group, e.g. k-NN and the linear probe that share the teacher's cached features, as one
job per run: one interpreter start and one set of imports instead of one per protocol and teacher.
The plan is a JSON list of `{"protocol": name, "command": knn | linear | finetune | detect,
"settings": {...}, "out": file, "checkpoint": teacher}` (`checkpoint` optional: `--checkpoint` by
default); each entry runs exactly as `python -m mokd <command> --checkpoint <teacher> --settings
<settings> --out <out>` would (every protocol seeds its own generators, so the numbers are those of
separate processes), in the plan's order. Every output folder is checked writable before the first
protocol starts; the first failure stops the plan with that protocol's exit code (its `error:` line
names it and its teacher), and what the protocols before it wrote stays.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mokd.config import ConfigError

# The protocol commands that evaluate one exported teacher (`--checkpoint`).
ONE_TEACHER_COMMANDS = ("knn", "linear", "finetune", "detect")


@dataclass(frozen=True)
class PlannedProtocol:
    """One protocol of a plan: its name (the workflow's), the command that runs it, settings, metrics file
    and teacher."""

    protocol: str
    command: str
    settings: dict[str, Any]
    out: str
    checkpoint: str  # the exported teacher it evaluates

    def argv(self, device: str) -> list[str]:
        """The `python -m mokd` arguments that run this protocol on its own."""
        return [self.command, "--checkpoint", self.checkpoint, "--settings", json.dumps(self.settings, sort_keys=True),
                "--out", self.out, "--device", device]


REQUIRED_KEYS = {"protocol", "command", "settings", "out"}
OPTIONAL_KEYS = {"checkpoint"}


def parse_plan(text: str, default_checkpoint: str | None = None) -> list[PlannedProtocol]:
    """The plan of `--plan`, each entry's teacher resolved (its own `checkpoint`, else `default_checkpoint`);
    ConfigError names the entry and key that is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--plan is not valid JSON: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise ConfigError("--plan must be a non-empty JSON list of {protocol, command, settings, out}")
    plan = []
    for i, entry in enumerate(raw):
        where = f"--plan[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object {{protocol, command, settings, out}}")
        missing = sorted(REQUIRED_KEYS - set(entry))
        extra = sorted(set(entry) - REQUIRED_KEYS - OPTIONAL_KEYS)
        if missing or extra:
            raise ConfigError(f"{where}: missing keys {missing}, unknown keys {extra}")
        if entry["command"] not in ONE_TEACHER_COMMANDS:
            raise ConfigError(f"{where}.command: {entry['command']!r} is not one of {list(ONE_TEACHER_COMMANDS)}")
        if not isinstance(entry["settings"], dict):
            raise ConfigError(f"{where}.settings must be an object")
        checkpoint = entry.get("checkpoint", default_checkpoint)
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ConfigError(f"{where}.checkpoint: no teacher to evaluate (give the entry a checkpoint, or --checkpoint)")
        plan.append(PlannedProtocol(str(entry["protocol"]), entry["command"], entry["settings"], str(entry["out"]),
                                    checkpoint))
    outs = [p.out for p in plan]
    if len(set(outs)) != len(outs):
        raise ConfigError(f"--plan: two protocols write the same file: {outs}")
    return plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="exported teacher (teacher_<model>.pt) of the plan's entries that name none")
    parser.add_argument("--plan", required=True,
                        help='JSON list of {"protocol", "command", "settings", "out"[, "checkpoint"]}, run in this order')
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")


def run(args: argparse.Namespace) -> int:
    from mokd.atomic import check_writable
    from mokd.cli import main  # the same parsing, error reporting and exit codes as a protocol's own process

    plan = parse_plan(args.plan, args.checkpoint)
    for entry in plan:
        check_writable(Path(entry.out).parent)
    debug = ["--debug"] if getattr(args, "debug", False) else []
    for i, entry in enumerate(plan, 1):
        print(f"[evaluate] {i}/{len(plan)} {entry.protocol} ({entry.command}) of {entry.checkpoint} -> {entry.out}",
              file=sys.stderr, flush=True)
        code = main(debug + entry.argv(args.device))
        if code:
            several = len({p.checkpoint for p in plan}) > 1  # then each protocol is named with its teacher
            left = [f"{p.protocol} of {p.checkpoint}" if several else p.protocol for p in plan[i:]]
            print(f"error: protocol {entry.protocol!r} failed (exit code {code}) on {entry.checkpoint}; "
                  f"not run: {left or 'none'}", file=sys.stderr, flush=True)
            return code
    return 0
