"""Two gloo processes train exactly what one process trains on the same global batches (ViT–ViT pair:
LayerNorm only, so per-process batch statistics cannot differ)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mokd.data import build_dataset
from mokd.distributed import init_distributed
from mokd.engine import Trainer
from tests.core.tiny import PAIRS, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(cfg: dict, out: Path) -> Trainer:
    info = init_distributed(torch.device("cpu"))
    trainer = Trainer(cfg, out, build_dataset(cfg["data"], "train"), info)
    trainer.train()
    return trainer


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    try:
        trainer = _train(cfg, Path(out))
        if rank == 0:
            torch.save({m.slot.name: m.slot.state_dict() for m in trainer.models}, Path(out) / "state.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_matches_single_process(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["vit_vit"](), fashion_root, epochs=2, batch_size=8)
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    single = _train(cfg, tmp_path / "single")
    ddp_state = torch.load(tmp_path / "ddp" / "state.pt")
    for model in single.models:
        for key, value in model.slot.state_dict().items():
            other = ddp_state[model.slot.name][key]
            assert torch.allclose(value, other, atol=2e-5, rtol=1e-4), f"{model.slot.name}.{key}"
