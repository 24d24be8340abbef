"""Process-group set-up from torchrun's or SLURM's environment; no-ops in a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _export_master() -> None:
    """MASTER_ADDR and MASTER_PORT where the launcher did not set them (torchrun and submitit jobs do).

    A task of a plain `srun` job step gets them by submitit's rule, the one mokd.launch's jobs use:
    the job's first node, and a port drawn from the job id (the same in every task). Elsewhere:
    this machine and torch's default port."""
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        return
    if "SLURM_JOB_ID" in os.environ:
        import submitit

        # submitit reads the job from SLURM's variables once told that this is a SLURM task
        we_set = "SUBMITIT_EXECUTOR" not in os.environ
        os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
        try:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=False)
        finally:
            if we_set:
                del os.environ["SUBMITIT_EXECUTOR"]
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


# What makes a process a task of a multi-process job (torchrun's and SLURM's variables); a command run
# without them is a single process.
TASK_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS")


def env_dist_info() -> DistInfo:
    """Rank and world size from torchrun (RANK/WORLD_SIZE) or a SLURM job step (SLURM_PROCID/SLURM_NTASKS)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return DistInfo(int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]), int(os.environ.get("SLURM_LOCALID", 0)))
    return DistInfo()


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (NCCL on GPU, gloo on CPU)."""
    info = env_dist_info()
    if info.world_size == 1 or dist.is_initialized():
        return info if not dist.is_initialized() else DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    _export_master()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend, init_method="env://", rank=info.rank, world_size=info.world_size)
    return info


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def resolve_device(name: str) -> torch.device:
    """`cuda`, `cpu` or `auto` (a GPU when one is visible); asking for cuda without a GPU is an error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from mokd.config import ConfigError

            raise ConfigError("config key 'device': cuda requested but no GPU is visible")
        return torch.device("cuda")
    return torch.device("cpu")
