"""`python -m mokd pretrain --config FILE --out DIR [key=value ...]`: train a pair or a baseline.

`--launcher` picks where it runs: in this process (default), through submitit's local executor, or as
a SLURM job that this process submits and waits for (options and behaviour: mokd/launch.py). The
process that trains holds the run folder's lock (mokd/runlock.py): a second training of the same
folder fails naming the first (exit code 8), or waits for it with `--wait-for-run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mokd import launch
from mokd.config import ConfigError, apply_overrides, deep_merge, load_yaml, validate
from mokd.runlock import training_lock


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
    parser.add_argument(
        "--wait-for-run", action="store_true",
        help="if another process trains in --out, wait for it to end instead of failing (exit code 8)",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="check the config and the launch options, say what would run (and be submitted), train nothing",
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. epochs=2 models.0.lambda=0.1")
    launch.add_arguments(parser)


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


def run(args: argparse.Namespace) -> int:
    """Errors (bad config, missing data, unreadable checkpoint, NaN loss, full disk) reach mokd/cli.py,
    which prints them on one line with their exit code."""
    if getattr(args, "dry_run", False):
        return dry_run(args)
    if getattr(args, "launcher", "inprocess") != "inprocess":
        return run_launched(args)
    from mokd.distributed import env_dist_info
    from mokd.engine import build_trainer

    cfg = load_pretrain_config(args.config, args.overrides, args.settings)
    with training_lock(args.out, args.wait_for_run, env_dist_info().is_main):  # one writer per run folder
        trainer = build_trainer(cfg, args.out, args.export_dir, args.restart_on_config_change)
        summary = trainer.train(stop_after=args.stop_after)
    if "stopped_at" not in summary and trainer.dist.is_main:
        print(f"[mokd] done: teachers and summary in {args.export_dir or args.out} ({summary['train_time_s']:.0f} s, "
              f"{summary['images_per_s']:.1f} img/s)", file=sys.stderr)
    return 0


def run_launched(args: argparse.Namespace) -> int:
    """Validate here, then train in a submitit job (local or SLURM) and wait for it (mokd/launch.py)."""
    opts = launch.options_from_args(args).resolved(args.out)
    opts.check()
    cfg = load_pretrain_config(args.config, args.overrides, args.settings)
    env = {}
    if opts.launcher == "submitit-local" and opts.gpus_per_node == 0:
        # submitit's local executor hides every GPU from a job that asks for none; in-process training
        # sees what this process sees, and so does the job then (device: auto picks the same device).
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    job = launch.PretrainJob(
        cfg, str(Path(args.out).resolve()), str(Path(args.export_dir).resolve()) if args.export_dir else None,
        args.restart_on_config_change, args.stop_after, threads=opts.cpus_per_task, env=env,
        debug=getattr(args, "debug", False), wait_for_run=args.wait_for_run,
    )
    return launch.submit_and_wait(job, opts)


def dry_run(args: argparse.Namespace) -> int:
    """What `run` would do, checked (config, launch options, the dataset's files) and said on stdout."""
    from mokd.data import check_dataset
    from mokd.objective import ActiveTerms

    cfg = load_pretrain_config(args.config, args.overrides, args.settings)
    opts = launch.options_from_args(args).resolved(args.out)
    opts.check()
    check_dataset(cfg["data"], "train")
    models = " + ".join(f"{m['name']} ({m['backbone']['arch']})" for m in cfg["models"])
    stop = f", stopping after {cfg['max_steps']} steps" if cfg["max_steps"] else ""
    terms = ActiveTerms.from_config(cfg["losses"], len(cfg["models"])).names()
    print(f"would train {models}: {cfg['epochs']} epochs of batch {cfg['batch_size']}{stop}, terms {terms}, "
          f"into {args.out}")
    if opts.launcher == "inprocess":
        print("in this process")
    else:
        where = "this machine (submitit's local executor)" if opts.launcher == "submitit-local" else "a SLURM job"
        print(f"as {where}: {opts.nodes} node(s) x {opts.tasks_per_node} task(s), {opts.gpus_per_node} GPU(s) and "
              f"{opts.cpus_per_task} CPU(s) per task, memory {opts.mem_gb or 'default'} GB per node, time limit "
              f"{opts.timeout_min} min (requeued up to {opts.max_num_timeout} times), partition "
              f"{opts.partition or 'default'}, account {opts.account or 'none'}, logs in {opts.log_folder}")
    return 0
