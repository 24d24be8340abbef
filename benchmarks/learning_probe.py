#!/usr/bin/env python
"""Does pre-training learn at a scale? Teachers against random initialisation, by k-NN, over seeds.

For choosing a scale's settings (docs/DEFAULT_SCALE.md): for each seed it pre-trains one DINO
baseline (one model) or one MOKD pair, built from a workflow config exactly as the workflow builds
it, runs the scale's k-NN protocol on each exported teacher and on a randomly initialised backbone
of the same architecture and seed, and prints per seed and model the k-NN top-1 of both, the final
MLP-Head teacher entropy against ln K (uniform collapse when they meet) and the pre-training time;
then, per model, the mean ± std over seeds of trained, random and their difference, with the
difference's standard error (std / sqrt(n)).

The k-NN protocol is `knn_probe` where the config defines one (config/cpu_study.yaml: a held-out
probe split, images that neither pre-training nor the tables' `knn` protocol use), else `knn`; so a
setting chosen on the probe leaves the tables' k-NN an independent test. The probe prints which
protocol it used and how many images its datasets share with the pre-training set and with `knn`'s.

  python benchmarks/learning_probe.py --models r50 --seeds 0 1 2 --jobs 2
  python benchmarks/learning_probe.py --models r50 vit_s --seeds 0 1 2 --set pretrain.epochs=30 \
      --set families.cnn.optimizer.lr=0.5 --out probe.json

`--set` takes dotted keys of the workflow config (config/default.yaml and its `base`), so every
setting a scale can change is reachable. Runs go to --work (default benchmarks/out/probe/<name>_s<seed>);
a run folder is reused only for the same config (the trainer refuses another one, naming the keys),
so a finished run is not trained again. Random initialisations are shared by every setting with the
same architecture and seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from mokd.data import build_dataset  # noqa: E402
from mokd.distributed import TASK_ENV_VARS  # noqa: E402
from mokd.models.network import build_network  # noqa: E402

_INIT_LOCK = threading.Lock()  # random initialisations use the global RNG


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def run_mokd(args: list[str], threads: int) -> None:
    # A probe is one process: a torchrun or SLURM task around it must not make its commands wait for other ranks.
    env = {k: v for k, v in os.environ.items() if k not in TASK_ENV_VARS}
    env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "mokd", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"`python -m mokd {args[0]}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def knn_top1(checkpoint: Path, settings: dict[str, Any], out: Path, threads: int) -> float:
    if not out.exists():
        run_mokd(["knn", "--checkpoint", str(checkpoint), "--settings", json.dumps(settings), "--out", str(out)], threads)
    return float(json.loads(out.read_text())["metrics"]["top1"])


def random_teacher(model_cfg: dict[str, Any], run_cfg: dict[str, Any], path: Path) -> Path:
    """The model's teacher backbone at its initialisation (seeded), exported like a trained teacher."""
    if path.exists():
        return path
    with _INIT_LOCK:
        torch.manual_seed(run_cfg["seed"])
        backbone = build_network(model_cfg, run_cfg, with_t_head=False, teacher=True).backbone
    export_teacher(path, model_cfg["name"], backbone, None, {"random_init_seed": run_cfg["seed"]})
    return path


def final_entropy(log_path: Path, name: str) -> float:
    last = None
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if name in record and isinstance(record[name], dict) and "teacher_entropy" in record[name]:
            last = record[name]["teacher_entropy"]
    return float("nan") if last is None else float(last)


def probe_seed(config: dict[str, Any], args: argparse.Namespace, seed: int, root: Path) -> list[dict[str, Any]]:
    """One seed: pre-train, then k-NN of every teacher and of its random initialisation."""
    cfg = pretrain_config(config, args.models, overrides={"seed": seed})
    work = Path(args.work) / f"s{seed}" if args.work else root / f"{'_'.join(args.models)}_{digest(cfg)}_s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    settings = protocol_settings(config, args.knn_protocol, work / "feature_cache")
    summary = work / "summary.json"
    if not summary.exists():
        run_mokd(["pretrain", "--settings", json.dumps(cfg), "--out", str(work), "--launcher", "inprocess"], args.threads)
    pretrain_s = json.loads(summary.read_text())["train_time_s"]
    rows = []
    for model_cfg in cfg["models"]:
        name = model_cfg["name"]
        trained_out = work / f"knn_{name}_{args.knn_protocol}_{digest(settings)}.json"
        trained = knn_top1(work / f"teacher_{name}.pt", settings, trained_out, args.threads)
        rand_dir = root / "random" / f"{name}_{digest([model_cfg['backbone'], cfg['crops']['global_size']])}_s{seed}"
        rand_path = random_teacher(model_cfg, cfg, rand_dir / f"random_{name}.pt")
        rand_settings = {**settings, "feature_cache": str(rand_dir / "feature_cache")}
        baseline = knn_top1(rand_path, rand_settings, rand_dir / f"knn_{args.knn_protocol}_{digest(rand_settings)}.json", args.threads)
        row = {
            "model": name,
            "seed": seed,
            "knn_top1": trained,
            "knn_top1_random_init": baseline,
            "gain": round(trained - baseline, 2),
            "teacher_entropy": round(final_entropy(work / "log.jsonl", name), 3),
            "ln_K": round(math.log(cfg["out_dim"]), 3),
            "steps": json.loads(summary.read_text())["steps"],
            "pretrain_s": round(pretrain_s, 1),
            "overrides": args.set,
            "knn_protocol": args.knn_protocol,
            "run": str(work),
        }
        print(
            f"seed {seed} {name}: k-NN {trained:.1f} vs random init {baseline:.1f} (gain {row['gain']:+.1f}); teacher "
            f"entropy {row['teacher_entropy']:.2f} of ln K = {row['ln_K']:.2f}; pre-training {pretrain_s:.0f} s",
            flush=True,
        )
        rows.append(row)
    return rows


PROBE_PROTOCOL = "knn_probe"  # the held-out probe split's k-NN protocol (config/cpu_study.yaml)


def _image_ids(spec: dict[str, Any], split: str) -> set[tuple[str, ...]]:
    """Which images of which dataset files a dataset spec selects (source index or file path)."""
    ds = build_dataset(spec, split)
    where = (spec["name"], str(Path(spec["root"]).resolve()), split)
    if hasattr(ds, "source_indices"):
        return {(*where, str(i)) for i in ds.source_indices}
    if hasattr(ds, "samples"):
        return {(*where, rel) for rel, _ in ds.samples}
    return {(*where, str(i)) for i in range(len(ds))}


def held_out_overlap(config: dict[str, Any], protocol: str) -> dict[str, int]:
    """Images the protocol's k-NN datasets share with the pre-training set and with the `knn` protocol's."""
    datasets, protocols = config["datasets"], config["protocols"]
    splits = {"data_train": "train", "data_val": "val"}  # as mokd/eval/knn.py reads them
    mine = set().union(*(_image_ids(datasets[role]["spec"], splits[key]) for key, role in protocols[protocol]["datasets"].items()))
    others = {"pretrain": _image_ids(datasets["pretrain"]["spec"], "train")}  # mokd/engine.py trains on "train"
    for key, role in protocols["knn"]["datasets"].items():
        others[f"knn.{key} ({role})"] = _image_ids(datasets[role]["spec"], splits[key])
    return {name: len(mine & ids) for name, ids in others.items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, over seeds: mean ± std of trained, random and gain; the gain's standard error."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        gains = [r["gain"] for r in mine]
        g_mean, g_std = mean_std(gains)
        out.append({
            "model": name,
            "seeds": [r["seed"] for r in mine],
            "knn_top1": mean_std([r["knn_top1"] for r in mine]),
            "knn_top1_random_init": mean_std([r["knn_top1_random_init"] for r in mine]),
            "gain": (g_mean, g_std),
            "gain_se": g_std / math.sqrt(len(gains)) if len(gains) > 1 else float("nan"),
            "teacher_entropy": statistics.fmean(r["teacher_entropy"] for r in mine),
            "entropy_fraction_of_ln_K": statistics.fmean(r["teacher_entropy"] / r["ln_K"] for r in mine),
            "pretrain_s": statistics.fmean(r["pretrain_s"] for r in mine),
            "steps": mine[0]["steps"],
        })
    return out


def print_summary(summary: list[dict[str, Any]], overrides: list[str]) -> None:
    print(f"over seeds ({', '.join(overrides) or 'no overrides'}):")
    for s in summary:
        (t, ts), (r, rs), (g, gs) = s["knn_top1"], s["knn_top1_random_init"], s["gain"]
        print(
            f"  {s['model']}: n={len(s['seeds'])}, trained {t:.1f} ± {ts:.1f}, random {r:.1f} ± {rs:.1f}, "
            f"gain {g:+.1f} ± {gs:.1f} (SE {s['gain_se']:.1f}); entropy {s['entropy_fraction_of_ln_K']:.2f} ln K; "
            f"{s['steps']} steps, {s['pretrain_s']:.0f} s per run",
            flush=True,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/default.yaml", help="workflow config (scale)")
    ap.add_argument("--models", nargs="+", required=True, help="one role (DINO baseline) or two (MOKD pair)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the config's scale.seeds)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at the same time (one CPU thread each by default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override of the workflow config, e.g. pretrain.epochs=30 (repeatable)")
    ap.add_argument("--knn-protocol", default=None,
                    help=f"protocol of the config to evaluate with (default: {PROBE_PROTOCOL} where the config has it, else knn)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each command")
    ap.add_argument("--work", default=None, help="run folder, one sub-folder per seed (default: benchmarks/out/probe/...)")
    ap.add_argument("--out", default=None, help="JSON file for the results (per seed and summary)")
    ap.add_argument("--dry-run", action="store_true", help="check the config and the overrides, say what would run")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if len(args.models) not in (1, 2):
        raise SystemExit("--models: give one role (DINO baseline) or two (a MOKD pair)")
    config = validate(apply_overrides(load_workflow_config(args.config), args.set), load_yaml(WORKFLOW_SCHEMA))
    pretrain_config(config, args.models)  # a bad key fails here, before any run
    if args.knn_protocol is None:
        args.knn_protocol = PROBE_PROTOCOL if PROBE_PROTOCOL in config["protocols"] else "knn"
    print(f"k-NN protocol: {args.knn_protocol}", flush=True)
    overlap = None
    if args.knn_protocol != "knn":
        overlap = held_out_overlap(config, args.knn_protocol)
        shared = ", ".join(f"{n} {name}" for name, n in overlap.items())
        warn = "WARNING: not held out; " if any(overlap.values()) else ""
        print(f"{warn}images {args.knn_protocol} shares with: {shared}", flush=True)
    seeds = args.seeds if args.seeds is not None else list(config["scale"]["seeds"])
    if args.dry_run:
        print(f"would pre-train {' + '.join(args.models)} for seeds {seeds} and compare its teachers' k-NN "
              f"({args.knn_protocol}) with their random initialisations; overrides {args.set}")
        return {"dry_run": True, "models": args.models, "seeds": seeds}
    root = REPO / "benchmarks" / "out" / "probe"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        per_seed = list(pool.map(lambda s: probe_seed(config, args, s, root), seeds))
    rows = [row for seed_rows in per_seed for row in seed_rows]
    summary = summarise(rows)
    print_summary(summary, args.set)
    result = {"config": args.config, "models": args.models, "overrides": args.set, "seeds": seeds,
              "knn_protocol": args.knn_protocol, "held_out_overlap": overlap,
              "rows": rows, "summary": summary, "wall_s": round(time.perf_counter() - t0, 1)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
