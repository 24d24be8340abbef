"""`python -m mokd pretrain --config FILE --out DIR [key=value ...]`: train a pair or a baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mokd.config import ConfigError, apply_overrides, deep_merge, load_yaml, validate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="pre-training YAML (schema: mokd/schemas/pretrain.yaml)")
    parser.add_argument("--settings", default=None, help="config as JSON, merged over --config (the workflow's way)")
    parser.add_argument("--out", required=True, help="run folder: log.jsonl, checkpoint.pt (and the exports by default)")
    parser.add_argument("--export-dir", default=None, help="where teacher_<model>.pt and summary.json go (default: --out)")
    parser.add_argument(
        "--restart-on-config-change", action="store_true",
        help="a checkpoint of another config is set aside (checkpoint.<hash>.pt) instead of refused",
    )
    parser.add_argument("--stop-after", type=int, default=None, help="stop after N steps, as if killed (tests)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. epochs=2 models.0.lambda=0.1")


def load_pretrain_config(
    path: str | Path | None, overrides: list[str] | None = None, settings_json: str | None = None
) -> dict[str, Any]:
    """Load (YAML file and/or JSON), override and validate a pre-training config (defaults filled in)."""
    if path is None and settings_json is None:
        raise ConfigError("give --config FILE and/or --settings JSON")
    cfg = load_yaml(path) if path is not None else {}
    if settings_json:
        try:
            cfg = deep_merge(cfg, json.loads(settings_json))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not valid JSON: {exc}") from exc
    return validate(apply_overrides(cfg, overrides or []), "pretrain")


def build_trainer(
    cfg: dict[str, Any], out: str | Path, export_dir: str | Path | None = None, restart_on_config_change: bool = False
) -> Any:
    """The trainer with its dataset and multi-crop transform, in this process's distributed context."""
    from mokd.data import MultiCropTransform, build_dataset
    from mokd.distributed import init_distributed
    from mokd.engine import Trainer, resolve_device

    dist_info = init_distributed(resolve_device(cfg["device"]))
    dataset = build_dataset(cfg["data"], "train")
    transform = MultiCropTransform.from_config(cfg["crops"])
    return Trainer(cfg, out, dataset, transform, dist_info, export_dir, restart_on_config_change)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_pretrain_config(args.config, args.overrides, args.settings)
        trainer = build_trainer(cfg, args.out, args.export_dir, args.restart_on_config_change)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = trainer.train(stop_after=args.stop_after)
    if "stopped_at" not in summary and trainer.dist.is_main:
        print(f"[mokd] done: teachers and summary in {args.export_dir or args.out} ({summary['train_time_s']:.0f} s, "
              f"{summary['images_per_s']:.1f} img/s)", file=sys.stderr)
    return 0
