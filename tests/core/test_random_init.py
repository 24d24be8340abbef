"""`python -m mokd random-init`: a run's teachers at initialisation, the tables' random reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mokd.checkpoint import export_provenance, load_backbone
from mokd.cli import main
from mokd.engine import Trainer
from mokd.data import build_dataset
from tests.core.tiny import CROPS, PAIRS, tiny_config


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("pipeline", ["pil", "batched"])
def test_the_reference_is_the_trained_runs_teacher_before_its_first_step(
    pipeline: str, fashion_root: Path, tmp_path: Path
) -> None:
    """Same network, same seed: the exported teacher equals the trainer's teacher at step 0, for each model
    of a pair (built in the config's order), whichever augmentation pipeline the trainer builds first,
    and another seed gives other weights."""
    cfg = tiny_config(PAIRS["cnn_vit"](), fashion_root, seed=3, crops={**CROPS, "pipeline": pipeline})
    out = tmp_path / "rand"
    assert main(["random-init", "--settings", json.dumps(cfg), "--export-dir", str(out)]) == 0
    trainer = Trainer(cfg, tmp_path / "run", build_dataset(cfg["data"], "train"))
    for model in trainer.models:
        path = out / f"teacher_{model.name}.pt"
        assert export_provenance(path)["random_init"] is True and export_provenance(path)["steps"] == 0
        assert _same_weights(load_backbone(path).state_dict(), model.slot.teacher.backbone.state_dict()), model.name
    assert json.loads((out / "summary.json").read_text())["seed"] == 3
    other = tmp_path / "rand4"
    assert main(["random-init", "--settings", json.dumps({**cfg, "seed": 4}), "--export-dir", str(other)]) == 0
    a, b = (load_backbone(d / "teacher_cnn.pt").state_dict() for d in (out, other))
    assert not _same_weights(a, b)
