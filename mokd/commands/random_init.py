"""`python -m mokd random-init --settings JSON --export-dir DIR`: the teachers of a run at initialisation.

The reference of the CPU scales' tables (what pre-training added): a model's random initialisation is
its DINO baseline's teacher before the first step. The networks are built as the trainer builds them
for this pre-training config (the global RNG seeded with its `seed`, then each model's student, whose
copy is the teacher, in the config's order) and each teacher is exported like a trained one, so the
reference is the same network, seed and evaluation protocol as the trained run, with no training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mokd.commands.pretrain import load_pretrain_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="pre-training YAML (schema: mokd/schemas/pretrain.yaml)")
    parser.add_argument("--settings", default=None, help="config as JSON, merged over --config (the workflow's way)")
    parser.add_argument("--export-dir", required=True, help="where teacher_<model>.pt and summary.json go")


def export_initial_teachers(cfg: dict, export_dir: str | Path) -> list[Path]:
    """Export the initial teacher of every model of a validated pre-training config; the exported files."""
    from mokd.checkpoint import export_teacher
    from mokd.atomic import write_text
    from mokd.config import config_hash
    from mokd.engine import OPERATIONAL_KEYS
    from mokd.models.network import ModelSlot
    from mokd.objective import ActiveTerms
    from mokd.provenance import code_version
    from mokd.sampling import seed_everything

    terms = ActiveTerms.from_config(cfg["losses"], len(cfg["models"]))
    seed_everything(cfg["seed"])
    slots = [ModelSlot(m["name"], m, cfg, with_t_head=terms.t_head) for m in cfg["models"]]
    out = Path(export_dir)
    hashed = config_hash({k: v for k, v in cfg.items() if k not in OPERATIONAL_KEYS})
    provenance = {"config_hash": hashed, "code_version": code_version(), "steps": 0, "random_init": True}
    paths = []
    for slot in slots:
        path = out / f"teacher_{slot.name}.pt"
        export_teacher(path, slot.name, slot.teacher.backbone, slot.teacher.t_head, provenance)
        paths.append(path)
    summary = {"random_init": True, "seed": cfg["seed"], "steps": 0, "models": [s.name for s in slots]}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return paths


def run(args: argparse.Namespace) -> int:
    cfg = load_pretrain_config(args.config, None, args.settings)
    paths = export_initial_teachers(cfg, args.export_dir)
    print(f"[mokd] random initialisation (seed {cfg['seed']}): {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0
