"""What every evaluation command shares: settings, device, the teacher to evaluate, the metrics file.

A protocol command reads its settings from `--config FILE` (YAML) and/or `--settings JSON` (merged
over the file; the workflow passes each job its own slice this way), evaluates one or more exported
teachers and writes one metrics JSON:

    {"protocol": ..., "metrics": {...}, "checkpoints": [...],
     "provenance": {"checkpoint_sha256": [...], "config_hash": ..., "code_version": ..., "dataset": ...,
                    "scale": ..., "settings": {...}, "created": ..., "content_sha256": ...}}

`content_sha256` seals the record (mokd/seal.py): a table refuses a metrics file edited after its job
wrote it, and `python -m mokd verify` reports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mokd.atomic import write_text
from mokd.config import ConfigError, apply_overrides, config_hash, deep_merge, load_yaml, validate
from mokd.provenance import code_version, file_sha256, now
from mokd.seal import sealed

if TYPE_CHECKING:  # `cost` needs no torch: imported where a device is resolved
    import torch


def add_common_arguments(parser: argparse.ArgumentParser, checkpoints: str = "one") -> None:
    """--checkpoint (or --checkpoints), --config, --settings, --out, --device and overrides."""
    if checkpoints == "one":
        parser.add_argument("--checkpoint", required=True, help="exported teacher (teacher_<model>.pt)")
    else:
        parser.add_argument("--checkpoints", nargs="+", required=True, help="exported teachers")
    parser.add_argument("--config", default=None, help="YAML with the protocol's settings")
    parser.add_argument("--settings", default=None, help="JSON settings merged over --config")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the settings")


def load_settings(
    args: argparse.Namespace, defaults: dict[str, Any] | None = None, schema: str | None = None
) -> dict[str, Any]:
    """Defaults <- --config file <- --settings JSON <- overrides; unknown keys are an error naming them.

    With `schema` (a command's settings schema in mokd/schemas/, which also holds its defaults), the
    settings are checked against it: `setting 'epochs' must be >= 1, got -1 (...)`, an unknown key with
    the closest known one. The workflow checks the same schemas before any job starts."""
    if schema is not None:
        defaults = validate({}, schema)
    settings: dict[str, Any] = dict(defaults or {})
    if args.config:
        settings = deep_merge(settings, load_yaml(args.config))
    if args.settings:
        try:
            settings = deep_merge(settings, json.loads(args.settings))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not valid JSON: {exc}") from exc
    settings = apply_overrides(settings, list(getattr(args, "overrides", []) or []))
    if schema is not None:
        return validate(settings, schema, label="setting")
    if defaults is not None:
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} for `{args.command}`; allowed: {sorted(defaults)}")
    return settings


def resolve_device(name: str) -> torch.device:
    """mokd.distributed.resolve_device (cuda without a GPU is an error), imported only when a command
    needs a device: `cost` runs without torch."""
    from mokd.distributed import resolve_device as resolve

    return resolve(name)


def dataset_label(data_cfg: dict[str, Any]) -> str:
    """A short human-readable dataset identity for provenance."""
    extra = {k: v for k, v in data_cfg.items() if k not in ("name", "root")}
    return f"{data_cfg.get('name')}:{data_cfg.get('root')}" + (f" {json.dumps(extra, sort_keys=True)}" if extra else "")


def warn_few_classes(labels: Sequence[int] | torch.Tensor, what: str) -> None:
    """A warning on stderr when a protocol's data has fewer than 2 classes: its accuracy (100 % for
    k-NN) then says nothing about the features."""
    classes = len({int(y) for y in labels})
    if classes < 2:
        print(f"warning: {what} has {classes} class{'' if classes == 1 else 'es'}: its accuracy measures "
              "nothing about the features; give the protocol a dataset with at least 2 classes",
              file=sys.stderr, flush=True)


def write_metrics(
    out: str | Path,
    protocol: str,
    metrics: dict[str, Any],
    checkpoints: list[str | Path],
    settings: dict[str, Any],
    dataset: str,
) -> dict[str, Any]:
    """Write the metrics JSON atomically, with its provenance; returns what was written."""
    record = {
        "protocol": protocol,
        "metrics": metrics,
        "checkpoints": [str(c) for c in checkpoints],
        "provenance": {
            "checkpoint_sha256": [file_sha256(c) for c in checkpoints],
            "config_hash": config_hash(settings),
            "code_version": code_version(),
            "dataset": dataset,
            "scale": settings.get("scale"),
            "settings": settings,
            "created": now(),
        },
    }
    record = sealed(record)  # its content hash: an edit made later shows (mokd/seal.py)
    write_text(out, json.dumps(record, indent=2, default=str))
    return record


def run_protocol(
    args: argparse.Namespace,
    protocol: str,
    schema: str,
    evaluate: Callable[[str, dict[str, Any], str, torch.device], dict[str, Any]],
) -> int:
    """The `run` of a protocol that learns on `data_train` and reports on `data_val`: settings (checked
    against the command's `schema`), the evaluation, the metrics file; bad input raises an error naming
    the key, file or path, which mokd/cli.py prints on one line with its exit code."""
    start = time.time()
    settings = load_settings(args, schema=schema)
    metrics = evaluate(args.checkpoint, settings, args.out, resolve_device(args.device))
    dataset = f"train {dataset_label(settings['data_train'])}; val {dataset_label(settings['data_val'])}"
    write_metrics(args.out, protocol, metrics, [args.checkpoint], settings, dataset)
    print(f"{protocol}: top-1 {metrics['top1']:.2f} % in {time.time() - start:.1f} s -> {args.out}", file=sys.stderr)
    return 0
