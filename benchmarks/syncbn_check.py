#!/usr/bin/env python
"""SyncBatchNorm as the pre-training converts it (mokd.engine.convert_sync_batchnorm), checked on a GPU:
W processes, each with half of a batch, must compute what one process computes on the whole batch —
the same normalised outputs, the same running statistics, and gradients that sum to the one-process
gradient. torch's SyncBatchNorm runs on GPUs only, so the CPU test suite checks the conversion
(tests/core/test_authors_recipe.py) and this script the statistics, on a lent GPU machine
(benchmarks/gpu_check.sh runs it):

    .venv/bin/python benchmarks/syncbn_check.py --out syncbn.json [--world-size 2]

With one GPU the processes share it and talk through gloo (NCCL refuses two ranks on one device); with
several, each process has its own GPU and NCCL. Without a GPU it says so and exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

BATCH, CHANNELS, SIZE = 16, 8, 12
TOLERANCE = 1e-4


def network() -> nn.Module:
    """A small CNN with BatchNorm (the statistics are what is checked, not the architecture)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, CHANNELS, 3, padding=1), nn.BatchNorm2d(CHANNELS), nn.ReLU(),
                         nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1), nn.BatchNorm2d(CHANNELS))


def batch() -> torch.Tensor:
    return torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def one_process(device: torch.device) -> dict[str, torch.Tensor]:
    net = network().to(device).train()
    x = batch().to(device).requires_grad_(True)
    out = net(x)
    out.pow(2).sum().backward()
    return {"out": out.detach().cpu(), "grad_x": x.grad.cpu(), **_state(net)}


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Running statistics and parameter gradients of every BatchNorm."""
    out = {}
    for i, m in enumerate(net.modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            out[f"bn{i}.running_mean"] = m.running_mean.detach().cpu()
            out[f"bn{i}.running_var"] = m.running_var.detach().cpu()
            out[f"bn{i}.weight_grad"] = m.weight.grad.detach().cpu()
            out[f"bn{i}.bias_grad"] = m.bias.grad.detach().cpu()
    return out


def worker(rank: int, world: int, init_file: str, backend: str, result_dir: str) -> None:
    from mokd.engine import convert_sync_batchnorm

    device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)

    class Slot(nn.Module):  # the shape convert_sync_batchnorm converts: a student and a teacher
        def __init__(self) -> None:
            super().__init__()
            self.student, self.teacher = network(), network()

    slot = Slot()
    converted = convert_sync_batchnorm(slot)  # type: ignore[arg-type]
    net = slot.student.to(device).train()
    x = batch().chunk(world)[rank].to(device).requires_grad_(True)
    out = net(x)
    out.pow(2).sum().backward()
    torch.save({"out": out.detach().cpu(), "grad_x": x.grad.cpu(), "converted": converted,
                "sync": sum(isinstance(m, nn.SyncBatchNorm) for m in net.modules()), **_state(net)},
               Path(result_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def compare(reference: dict[str, torch.Tensor], ranks: list[dict[str, Any]]) -> dict[str, float]:
    """Max absolute differences: outputs and input gradients concatenated over ranks, running statistics
    of rank 0, parameter gradients summed over ranks."""
    diffs = {
        "out": (torch.cat([r["out"] for r in ranks]) - reference["out"]).abs().max().item(),
        "grad_x": (torch.cat([r["grad_x"] for r in ranks]) - reference["grad_x"]).abs().max().item(),
    }
    for key in reference:
        if key.endswith(("running_mean", "running_var")):
            diffs[key] = (ranks[0][key] - reference[key]).abs().max().item()
        elif key.endswith("_grad"):
            diffs[key] = (sum(r[key] for r in ranks) - reference[key]).abs().max().item()
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("syncbn_check: no GPU visible; torch's SyncBatchNorm runs on GPUs only", file=sys.stderr)
        return 3
    backend = "nccl" if torch.cuda.device_count() >= args.world_size else "gloo"
    reference = one_process(torch.device("cuda", 0))
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        torch.multiprocessing.spawn(worker, args=(args.world_size, init_file, backend, tmp), nprocs=args.world_size)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(args.world_size)]
    diffs = compare(reference, ranks)
    ok = all(v <= TOLERANCE * max(1.0, reference["out"].abs().max().item()) for v in diffs.values())
    ok = ok and all(r["sync"] == 2 and r["converted"] == 4 for r in ranks)
    report = {"world_size": args.world_size, "backend": backend, "device": torch.cuda.get_device_name(0),
              "max_abs_diff": diffs, "tolerance": TOLERANCE, "ok": ok}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(f"syncbn_check: {args.world_size} processes ({backend}) {'equal' if ok else 'DIFFER from'} one process "
          f"on the whole batch (max abs diff {max(diffs.values()):.2e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
