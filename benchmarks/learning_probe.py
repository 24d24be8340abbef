#!/usr/bin/env python
"""Does pre-training learn at a scale? One run's teachers against random initialisation, by k-NN.

For tuning a scale's config (see docs/DEFAULT_SCALE.md): it pre-trains one DINO baseline (one model)
or one MOKD pair, built from a workflow config exactly as the workflow builds it, then runs the
scale's k-NN protocol on each exported teacher and on a randomly initialised backbone of the same
architecture, and prints one line per model: k-NN top-1 of both, the final MLP-Head teacher entropy
against ln K (uniform collapse when they meet) and the pre-training time.

  python benchmarks/learning_probe.py --models r50
  python benchmarks/learning_probe.py --models r50 vit_s --set pretrain.epochs=30 \
      --set families.cnn.optimizer.lr=0.5 --out probe.json

`--set` takes dotted keys of the workflow config (config/default.yaml and its `base`), so every
setting a scale can change is reachable. Runs go to --work (default benchmarks/out/probe/<name>); a
run folder is reused only for the same config (the trainer refuses another one, naming the keys).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.workflow_config import (  # noqa: E402
    WORKFLOW_SCHEMA,
    load_workflow_config,
    pretrain_config,
    protocol_settings,
)
from mokd.checkpoint import export_teacher  # noqa: E402
from mokd.config import apply_overrides, load_yaml, validate  # noqa: E402
from mokd.distributed import TASK_ENV_VARS  # noqa: E402
from mokd.models.network import build_network  # noqa: E402


def run_mokd(args: list[str], threads: int) -> None:
    # A probe is one process: a torchrun or SLURM task around it must not make its commands wait for other ranks.
    env = {k: v for k, v in os.environ.items() if k not in TASK_ENV_VARS}
    env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "mokd", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"`python -m mokd {args[0]}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def knn_top1(checkpoint: Path, settings: dict[str, Any], out: Path, threads: int) -> float:
    run_mokd(["knn", "--checkpoint", str(checkpoint), "--settings", json.dumps(settings), "--out", str(out)], threads)
    return float(json.loads(out.read_text())["metrics"]["top1"])


def random_teacher(model_cfg: dict[str, Any], run_cfg: dict[str, Any], path: Path) -> Path:
    """The model's teacher backbone at its initialisation (seeded), exported like a trained teacher."""
    torch.manual_seed(run_cfg["seed"])
    backbone = build_network(model_cfg, run_cfg, with_t_head=False, teacher=True).backbone
    export_teacher(path, model_cfg["name"], backbone, None, None, {"random_init_seed": run_cfg["seed"]})
    return path


def final_entropy(log_path: Path, name: str) -> float:
    last = None
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if name in record and isinstance(record[name], dict) and "teacher_entropy" in record[name]:
            last = record[name]["teacher_entropy"]
    return float("nan") if last is None else float(last)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/default.yaml", help="workflow config (scale)")
    ap.add_argument("--models", nargs="+", required=True, help="one role (DINO baseline) or two (MOKD pair)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override of the workflow config, e.g. pretrain.epochs=30 (repeatable)")
    ap.add_argument("--knn-protocol", default="knn", help="protocol of the config to evaluate with")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each command")
    ap.add_argument("--work", default=None, help="run folder (default: benchmarks/out/probe/<name>)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if len(args.models) not in (1, 2):
        raise SystemExit("--models: give one role (DINO baseline) or two (a MOKD pair)")
    config = validate(apply_overrides(load_workflow_config(args.config), args.set), load_yaml(WORKFLOW_SCHEMA))
    cfg = pretrain_config(config, args.models)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
    work = Path(args.work) if args.work else REPO / "benchmarks" / "out" / "probe" / f"{'_'.join(args.models)}_{digest}"
    work.mkdir(parents=True, exist_ok=True)
    settings = protocol_settings(config, args.knn_protocol, work / "feature_cache")

    t0 = time.perf_counter()
    run_mokd(["pretrain", "--settings", json.dumps(cfg), "--out", str(work), "--launcher", "inprocess"], args.threads)
    pretrain_s = time.perf_counter() - t0

    results = []
    for model_cfg in cfg["models"]:
        name = model_cfg["name"]
        trained = knn_top1(work / f"teacher_{name}.pt", settings, work / f"knn_{name}.json", args.threads)
        rand_path = random_teacher(model_cfg, cfg, work / f"random_{name}.pt")
        baseline = knn_top1(rand_path, settings, work / f"knn_random_{name}.json", args.threads)
        row = {
            "model": name,
            "knn_top1": trained,
            "knn_top1_random_init": baseline,
            "gain": round(trained - baseline, 2),
            "teacher_entropy": round(final_entropy(work / "log.jsonl", name), 3),
            "ln_K": round(math.log(cfg["out_dim"]), 3),
            "epochs": cfg["epochs"],
            "pretrain_s": round(pretrain_s, 1),
            "overrides": args.set,
            "run": str(work),
        }
        results.append(row)
        print(
            f"{name}: k-NN {trained:.1f} vs random init {baseline:.1f} (gain {row['gain']:+.1f}); teacher entropy "
            f"{row['teacher_entropy']:.2f} of ln K = {row['ln_K']:.2f}; pre-training {pretrain_s:.0f} s; "
            f"overrides {args.set or 'none'}",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
