"""Training time, peak memory and throughput of pre-training runs (Table S3).

`python -m mokd cost --summaries RUN1/summary.json [RUN2/summary.json ...] [--labels A B ...]
 --settings '{...}' --out cost.json`

Each pre-training run writes `summary.json` (`Trainer.finish`). Per run we report the training time
in hours, the peak memory per device in GB (1 GB = 1024 MiB, as torch's byte counts are usually
reported; on a CPU the summary holds the process's peak RSS instead, and `peak_memory_kind` says so),
the throughput and the device. A table row may combine runs, as S3's "DINO R50/ViT-S" row combines two
independent runs: setting `rows` = [{"name": ..., "runs": [label, ...]}, ...]; its time and memory are
the sums, shown "a+b" like the paper's "97+94 h" and "6.4+6.3 GB". Without `rows`, every run is a row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mokd.config import ConfigError
from mokd.eval.common import load_settings, write_metrics
from mokd.provenance import file_sha256

DEFAULTS: dict[str, Any] = {
    "scale": "paper",
    "rows": None,  # [{"name": str, "runs": [label, ...]}]; default: one row per run
    "significant_digits": 3,  # of the "a+b" texts; the numbers themselves are not rounded
}
REQUIRED_KEYS = ("train_time_s", "peak_memory_mb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summaries", nargs="+", required=True, help="summary.json of each pre-training run")
    parser.add_argument("--labels", nargs="+", default=None, help="a name per summary (default: its run folder)")
    parser.add_argument("--config", default=None, help="YAML with the protocol's settings")
    parser.add_argument("--settings", default=None, help="JSON settings merged over --config")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the settings")


def read_summary(path: str | Path) -> dict[str, Any]:
    """A run's summary.json; a missing file, bad JSON or a missing key is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"summary not found: {path}")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"summary {path} is not valid JSON: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(summary.get(k), (int, float))]
    if missing:
        raise ConfigError(f"summary {path} lacks numeric {missing} (written by `python -m mokd pretrain`)")
    return summary


def run_entry(summary: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """S3's figures of one run, with the summary's identity."""
    return {
        "train_time_h": summary["train_time_s"] / 3600.0,
        "peak_memory_gb": summary["peak_memory_mb"] / 1024.0,
        "peak_memory_kind": summary.get("peak_memory_kind"),
        "images_per_s": summary.get("images_per_s"),
        "device": summary.get("device"),
        "device_name": summary.get("device_name"),
        "world_size": summary.get("world_size"),
        "steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "models": summary.get("models"),
        "summary": str(path),
        "summary_sha256": file_sha256(path),
    }


def fmt(value: float | None, digits: int) -> str:
    """`digits` significant digits (97.3, 6.4, 0.00039), whole numbers from 10**digits on (1234)."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 10 ** (digits - 1) else f"{value:.{digits}g}"


def row_entry(runs: list[dict[str, Any]], labels: list[str], digits: int) -> dict[str, Any]:
    """A table row over one or more runs: summed time and memory, with their "a+b" texts."""
    hours = [r["train_time_h"] for r in runs]
    gbs = [r["peak_memory_gb"] for r in runs]
    rates = [r["images_per_s"] for r in runs]
    devices = sorted({f"{r['world_size'] or 1}x {r['device_name']}" for r in runs})
    return {
        "runs": labels,
        "train_time_h": sum(hours),
        "train_time_h_text": "+".join(fmt(h, digits) for h in hours),
        "peak_memory_gb": sum(gbs),
        "peak_memory_gb_text": "+".join(fmt(g, digits) for g in gbs),
        "images_per_s": rates,
        "images_per_s_text": "/".join(fmt(r, digits) for r in rates),
        "devices": ", ".join(devices),
        "peak_memory_kind": ", ".join(sorted({str(r["peak_memory_kind"]) for r in runs})),
    }


def resolve_rows(rows: Any, labels: list[str]) -> list[tuple[str, list[str]]]:
    """(row name, run labels) from the `rows` setting, or one row per run."""
    if rows is None:
        return [(label, [label]) for label in labels]
    if not isinstance(rows, list):
        raise ConfigError(f"setting 'rows' must be a list of {{name, runs}}, got {rows!r}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"name", "runs"} or not isinstance(row["runs"], list):
            raise ConfigError(f"setting 'rows.{i}' must be {{'name': str, 'runs': [label, ...]}}, got {row!r}")
        unknown = [r for r in row["runs"] if r not in labels]
        if unknown or not row["runs"]:
            raise ConfigError(f"setting 'rows.{i}.runs' names unknown run(s) {unknown}; runs: {labels}")
        out.append((str(row["name"]), [str(r) for r in row["runs"]]))
    return out


def default_labels(paths: list[str]) -> list[str]:
    return [Path(p).resolve().parent.name for p in paths]


def run(args: argparse.Namespace) -> int:
    s = load_settings(args, DEFAULTS)
    labels = args.labels or default_labels(args.summaries)
    if len(labels) != len(args.summaries) or len(set(labels)) != len(labels):
        raise ConfigError(f"--labels must give one distinct name per summary ({len(args.summaries)}), got {labels}")
    runs = {label: run_entry(read_summary(p), p) for label, p in zip(labels, args.summaries)}
    rows = resolve_rows(s["rows"], labels)
    digits = int(s["significant_digits"])
    metrics = {
        "runs": runs,
        "rows": {name: row_entry([runs[r] for r in members], members, digits) for name, members in rows},
    }
    write_metrics(args.out, "cost", metrics, args.summaries, s, dataset="pre-training runs (see each summary)")
    for name, row in metrics["rows"].items():
        print(f"[mokd] cost {name}: {row['train_time_h_text']} h, {row['peak_memory_gb_text']} GB, "
              f"{row['images_per_s_text']} img/s on {row['devices']}", file=sys.stderr)
    return 0
