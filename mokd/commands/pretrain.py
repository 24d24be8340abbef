"""`python -m mokd pretrain --config FILE --out DIR [key=value ...]`: train a pair or a baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mokd.config import ConfigError, apply_overrides, load_yaml, validate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="pre-training YAML (schema: mokd/schemas/pretrain.yaml)")
    parser.add_argument("--out", required=True, help="output folder: teachers, summary.json, log.jsonl, checkpoint.pt")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after N steps, as if killed (tests)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. epochs=2 models.0.lambda=0.1")


def load_pretrain_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Load, override and validate a pre-training config (defaults filled in)."""
    cfg = apply_overrides(load_yaml(path), overrides or [])
    return validate(cfg, "pretrain")


def build_trainer(cfg: dict[str, Any], out: str | Path) -> Any:
    """The trainer with its dataset and multi-crop transform, in this process's distributed context."""
    from mokd.data import MultiCropTransform, build_dataset
    from mokd.distributed import init_distributed
    from mokd.engine import Trainer, resolve_device

    dist_info = init_distributed(resolve_device(cfg["device"]))
    dataset = build_dataset(cfg["data"], "train")
    transform = MultiCropTransform.from_config(cfg["crops"])
    return Trainer(cfg, out, dataset, transform, dist_info)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_pretrain_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trainer = build_trainer(cfg, args.out)
    summary = trainer.train(stop_after=args.stop_after)
    if "stopped_at" not in summary and trainer.dist.is_main:
        print(f"[mokd] done: teachers and summary in {args.out} ({summary['train_time_s']:.0f} s, "
              f"{summary['images_per_s']:.1f} img/s)", file=sys.stderr)
    return 0
