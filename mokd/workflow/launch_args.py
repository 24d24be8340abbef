"""How the workflow sizes and launches its jobs: Snakemake's `gpu` resource and the `mokd pretrain`
launch options of config["launch"] (the options themselves: mokd/launch.py, docs/CLUSTER.md)."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from typing import Any

# What Snakemake's SLURM executor plugin and `--launcher slurm` (submitit) call.
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel")


def gpu_resource(resources: Mapping[str, Any]) -> dict[str, int]:
    """Snakemake's `gpu` resource for a kind of rule (config resources.<kind>.gpus), which the SLURM
    executor plugin turns into `--gpus=N`; nothing when 0 or unset, so that local runs are unaffected."""
    n = int(resources.get("gpus", 0) or 0)
    return {"gpu": n} if n > 0 else {}


def workflow_launch_args(launch: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    """The `mokd pretrain` options of the workflow's config["launch"] (none for inprocess); its unset
    (null) sizes come from config["resources"]["pretrain"]."""
    if launch["pretrain"] == "inprocess":
        return ""
    on_slurm = launch["pretrain"] == "slurm"
    gpus = launch.get("gpus_per_node")
    cpus = launch.get("cpus_per_task")
    mem_gb = launch.get("mem_gb")
    timeout = launch.get("timeout_min")
    if mem_gb is None and "mem_mb" in resources:
        mem_gb = resources["mem_mb"] / 1000
    if timeout is None:  # a local child process needs no limit (a week); a SLURM job gets the rule's runtime
        timeout = int(resources.get("runtime", 60)) if on_slurm else 10080
    args = [
        f"--launcher {launch['pretrain']}",
        f"--nodes {launch.get('nodes', 1)}",
        f"--gpus-per-node {int(gpus if gpus is not None else resources.get('gpus', 0) or 0)}",
        f"--cpus-per-task {int(cpus if cpus is not None else resources.get('threads', 1))}",
        f"--timeout-min {int(timeout)}",
        f"--max-num-timeout {launch.get('max_num_timeout', 3)}",
    ]
    if mem_gb:
        args.append(f"--mem-gb {mem_gb:g}")
    for key in ("partition", "account"):
        if launch.get(key):
            args.append(f"--{key} {shlex.quote(str(launch[key]))}")
    return " ".join(args)


def missing_slurm_commands(uses: list[str]) -> list[str]:
    """SLURM's commands that are not on PATH, for a run that `uses` SLURM (what, in words); [] otherwise."""
    return [c for c in SLURM_COMMANDS if shutil.which(c) is None] if uses else []


def slurm_message(missing: list[str], uses: list[str], stopped: bool) -> str:
    """One line: which SLURM commands are missing, what needs them, what to do."""
    head = f"SLURM's commands are not on PATH ({', '.join(missing)})"
    need = (f"{' and '.join(uses)} need{'' if len(uses) > 1 else 's'} them. Run on a machine of the cluster "
            "(a login node), or without SLURM (no --profile slurm, launch.pretrain not slurm)")
    return f"{head}, nothing was started: {need}" if stopped else f"{head}: {need} (a real run stops before any job)"
