"""Pre-training throughput of a scale's runs with each multi-crop pipeline, data loading included.

For every pre-training run of a workflow config (its experiments; by default every one the scale's
DAG trains), this builds the run's real `python -m mokd pretrain` config (benchmarks/workflow_config.py),
then trains it for `--warmup` + `--steps` steps with the PIL pipeline and with the batched one,
interleaved (pil, batched, batched, pil, ...) so that load from other processes slows both alike.
It reports steps/s of the timed steps and splits each step's wall time into the training step
(`Trainer.train_step`) and everything else (fetching the batch: decoding and multi-crop augmentation).

    .venv/bin/python benchmarks/pretrain_throughput.py --config config/default.yaml --out throughput.json
    .venv/bin/python benchmarks/pretrain_throughput.py --runs dino_r50 mokd_r50_vit_s --steps 10 --repeats 3

The dataset must be prepared (`python -m mokd prepare-data fashion-mnist --root data/fashion_mnist` at
the default scale). Runs write into a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workflow_config import load_workflow_config, pretrain_config  # noqa: E402
from mokd.engine import build_trainer  # noqa: E402


def run_configs(config: dict[str, Any], names: list[str] | None) -> dict[str, dict[str, Any]]:
    """The pretrain config of each named experiment (default: all of the config's experiments)."""
    experiments = config["experiments"]
    unknown = [n for n in names or [] if n not in experiments]
    if unknown:
        raise SystemExit(f"error: unknown runs {unknown}; the config defines {sorted(experiments)}")
    out = {}
    for name in names or list(experiments):
        exp = experiments[name]
        overrides = {k: exp[k] for k in ("losses", "t_head") if k in exp}
        lambdas = [float(x) for x in exp["lambda"]] if "lambda" in exp else None
        out[name] = pretrain_config(config, list(exp["models"]), exp.get("dataset", "pretrain"), lambdas, overrides or None)
    return out


def time_run(cfg: dict[str, Any], pipeline: str, warmup: int, steps: int) -> dict[str, float]:
    """Train `warmup + steps` steps with `pipeline`; wall and train_step time of the last `steps`."""
    cfg = {**cfg, "crops": {**cfg["crops"], "pipeline": pipeline}, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(cfg, Path(tmp) / "run")
        if warmup + steps >= min(trainer.iters_per_epoch, trainer.cfg["checkpoint_every_iters"]):
            raise SystemExit(
                f"error: --warmup + --steps ({warmup + steps}) must stay below an epoch ({trainer.iters_per_epoch} steps) "
                f"and the checkpoint interval ({trainer.cfg['checkpoint_every_iters']}) so no checkpoint is timed"
            )
        marks: list[float] = []
        step_s: list[float] = []
        inner = trainer.train_step

        def timed_step(crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            out = inner(crops, epoch)
            step_s.append(time.perf_counter() - t0)
            return out

        def mark() -> bool:
            marks.append(time.perf_counter())
            return False

        trainer.train_step = timed_step  # type: ignore[method-assign]
        trainer.train(stop_after=warmup + steps + 1, should_stop=mark)
    # marks[i] is taken after step i + 1; the timed steps are warmup + 1 .. warmup + steps
    wall = marks[warmup + steps - 1] - marks[warmup - 1]
    compute = sum(step_s[warmup : warmup + steps])
    return {"steps_per_s": steps / wall, "step_ms": 1000 * wall / steps, "train_step_ms": 1000 * compute / steps,
            "data_ms": 1000 * (wall - compute) / steps, "data_fraction": (wall - compute) / wall}


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/default.yaml", help="workflow config")
    ap.add_argument("--runs", nargs="*", default=None, help="experiments to time (default: all of the config's)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    ap.add_argument("--repeats", type=int, default=2, help="measurements per pipeline (interleaved); the median is reported")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's resources.pretrain.threads)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.warmup < 1:
        ap.error("--warmup must be at least 1")

    config = load_workflow_config(args.config)
    threads = args.threads or int(config["resources"]["pretrain"]["threads"])
    torch.set_num_threads(threads)
    configs = run_configs(config, args.runs)
    rows = []
    print(f"{'run':<22} {'PIL steps/s':>11} {'batched':>9} {'ratio':>6}   data share PIL -> batched   train_step ms PIL / batched")
    for name, cfg in configs.items():
        measured: dict[str, list[dict[str, float]]] = {"pil": [], "batched": []}
        for r in range(args.repeats):
            order = ["pil", "batched"] if r % 2 == 0 else ["batched", "pil"]
            for pipeline in order:
                measured[pipeline].append(time_run(cfg, pipeline, args.warmup, args.steps))
        pil, batched = median_of(measured["pil"]), median_of(measured["batched"])
        row = {"run": name, "pil": pil, "batched": batched, "speedup": batched["steps_per_s"] / pil["steps_per_s"]}
        rows.append(row)
        print(f"{name:<22} {pil['steps_per_s']:>11.2f} {batched['steps_per_s']:>9.2f} {row['speedup']:>5.2f}x"
              f"   {100 * pil['data_fraction']:>5.1f} % -> {100 * batched['data_fraction']:>5.1f} %"
              f"        {pil['train_step_ms']:>7.0f} / {batched['train_step_ms']:.0f}", flush=True)
    total_pil = sum(1 / r["pil"]["steps_per_s"] for r in rows)
    total_batched = sum(1 / r["batched"]["steps_per_s"] for r in rows)
    summary = {"config": args.config, "threads": threads, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
               "runs": rows, "seconds_per_step_all_runs": {"pil": total_pil, "batched": total_batched},
               "speedup_all_runs": total_pil / total_batched,
               "median_speedup": statistics.median(r["speedup"] for r in rows)}
    print(f"all runs (one step each): PIL {total_pil:.2f} s, batched {total_batched:.2f} s: "
          f"{summary['speedup_all_runs']:.2f}x; median per run {summary['median_speedup']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
