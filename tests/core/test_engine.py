"""The pair engine: terms, gradient isolation, last-layer freeze, stop-and-resume, collapse and NaN guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mokd.checkpoint import CheckpointError, load_backbone
from mokd.data import build_dataset
from mokd.engine import NonFiniteLossError, Trainer
from tests.core.helpers import first_batch, make_trainer, slot_states
from tests.core.tiny import CROPS, PAIRS, tiny_config


@pytest.mark.parametrize("kind", ["cnn_vit", "cnn_cnn", "vit_vit"])
def test_no_gradient_crosses_between_models(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(PAIRS[kind](), fashion_root), tmp_path)
    terms = trainer.compute_losses(first_batch(trainer))
    assert set(terms[0]) == set(terms[1]) == {"sm", "st", "cm", "ct"}
    model1, model2 = trainer.models
    sum(terms[0].values()).backward()
    assert all(p.grad is None for p in model2.slot.student.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model1.slot.student.parameters())
    assert all(p.grad is None for m in trainer.models for p in m.slot.teacher.parameters())


def test_terms_switch_off_from_config(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["cnn_vit"](), fashion_root, losses={"self_thead": False, "cross_thead": False})
    trainer = make_trainer(cfg, tmp_path)
    terms = trainer.compute_losses(first_batch(trainer))
    assert set(terms[0]) == {"sm", "cm"}
    assert trainer.models[0].slot.student.t_head is None  # no T-Head is built when no term uses it
    baseline = make_trainer(tiny_config(PAIRS["dino"](), fashion_root), tmp_path / "b")
    terms = baseline.compute_losses(first_batch(baseline))
    assert set(terms[0]) == {"sm", "st"}


def test_search_off_uses_the_plain_teacher_t_head(fashion_root: Path, tmp_path: Path) -> None:
    cfg_on = tiny_config(PAIRS["cnn_vit"](), fashion_root)
    cfg_off = tiny_config(PAIRS["cnn_vit"](), fashion_root, losses={"search": False})
    on, off = make_trainer(cfg_on, tmp_path / "on"), make_trainer(cfg_off, tmp_path / "off")
    crops = first_batch(on)
    t_on = on.compute_losses(crops)
    t_off = off.compute_losses(crops)
    assert float(t_on[0]["sm"].detach()) == pytest.approx(float(t_off[0]["sm"].detach()), rel=1e-5)  # same weights and views
    assert float(t_on[0]["ct"].detach()) != pytest.approx(float(t_off[0]["ct"].detach()), rel=1e-4)  # the query changes ŝ


def test_last_layer_frozen_during_first_epoch(fashion_root: Path, tmp_path: Path) -> None:
    models = PAIRS["cnn_vit"]()
    for m in models:
        m["freeze_last_layer_epochs"] = 1
    trainer = make_trainer(tiny_config(models, fashion_root), tmp_path)
    before = [m.slot.student.mlp_head.last_layer.direction.detach().clone() for m in trainer.models]
    body_before = [next(m.slot.student.mlp_head.mlp.parameters()).detach().clone() for m in trainer.models]
    trainer.train_step(first_batch(trainer), epoch=0)
    for m, b, bb in zip(trainer.models, before, body_before):
        assert torch.equal(m.slot.student.mlp_head.last_layer.direction, b)
        assert not torch.equal(next(m.slot.student.mlp_head.mlp.parameters()), bb)
    trainer.step = trainer.iters_per_epoch  # the first step of epoch 1
    trainer.train_step(first_batch(trainer), epoch=1)
    assert not torch.equal(trainer.models[0].slot.student.mlp_head.last_layer.direction, before[0])


def test_teacher_is_ema_of_student(fashion_root: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(PAIRS["dino"](), fashion_root), tmp_path)
    slot = trainer.models[0].slot
    teacher_before = [p.detach().clone() for p in slot.teacher.parameters()]
    trainer.train_step(first_batch(trainer), epoch=0)
    m = float(trainer.models[0].momentum[0])
    for t_old, t_new, s in zip(teacher_before, slot.teacher.parameters(), slot.student.parameters()):
        assert torch.allclose(t_new, m * t_old + (1 - m) * s.detach(), atol=1e-6)


@pytest.mark.parametrize("pipeline", ["pil", "batched"])
@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_stop_and_resume_equals_uninterrupted(stop_at: int, pipeline: str, fashion_root: Path, tmp_path: Path) -> None:
    """Killed after `stop_at` steps (checkpoints every 2 steps and at epoch ends), resumed: same weights."""
    models = PAIRS["cnn_vit"]()
    models[1]["backbone"]["drop_path"] = 0.1  # random per step: the RNG state must be restored too
    cfg = tiny_config(models, fashion_root, epochs=3, crops={**CROPS, "pipeline": pipeline})
    full = make_trainer(cfg, tmp_path / "full")
    full.train()
    interrupted = make_trainer(cfg, tmp_path / "resumed")
    assert interrupted.train(stop_after=stop_at) == {"stopped_at": stop_at}
    resumed = make_trainer(cfg, tmp_path / "resumed")
    resumed.train()
    a, b = slot_states(full), slot_states(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(full.total_iters))  # the steps after the checkpoint once


def test_resume_with_other_config_is_refused(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["dino"](), fashion_root)
    make_trainer(cfg, tmp_path).train(stop_after=3)
    other = tiny_config(PAIRS["dino"](), fashion_root, epochs=5, seed=3)
    with pytest.raises(CheckpointError, match=r"epochs.*seed|seed.*epochs"):
        make_trainer(other, tmp_path).train()


def test_non_finite_loss_names_the_term_and_keeps_the_checkpoint(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["cnn_vit"](), fashion_root)
    trainer = make_trainer(cfg, tmp_path)
    trainer.train(stop_after=3)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    trainer = make_trainer(cfg, tmp_path)
    # A hook survives the resume's load_state_dict: model 2's MLP-Head starts emitting NaN.
    trainer.models[1].slot.student.mlp_head.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"model 'vit': loss term L_sm is nan"):
        trainer.train()
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved


def test_collapse_is_warned(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["dino"](), fashion_root, collapse_warning=0.0)
    with pytest.warns(RuntimeWarning, match="collapsing"):
        make_trainer(cfg, tmp_path).train()


def test_export_loads_strictly(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(PAIRS["cnn_vit"](), fashion_root, epochs=1)
    trainer = make_trainer(cfg, tmp_path)
    trainer.train()
    backbone = load_backbone(tmp_path / "teacher_cnn.pt", expected=cfg["models"][0]["backbone"])
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, trainer.models[0].slot.teacher.backbone.state_dict()[k])
    with pytest.raises(CheckpointError, match="expected"):
        load_backbone(tmp_path / "teacher_cnn.pt", expected=cfg["models"][1]["backbone"])
    blob = torch.load(tmp_path / "teacher_cnn.pt", weights_only=False)
    blob["state_dict"].pop(next(iter(blob["state_dict"])))
    torch.save(blob, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_backbone(tmp_path / "broken.pt")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == trainer.total_iters and summary["train_time_s"] > 0


def test_config_change_sets_the_old_checkpoint_and_log_aside(fashion_root: Path, tmp_path: Path) -> None:
    """--restart-on-config-change: the old run's checkpoint and log.jsonl are kept under its hash, and the
    new run's log holds only its own steps (no reader mixes two runs)."""
    old = make_trainer(tiny_config(PAIRS["dino"](), fashion_root), tmp_path)
    old.train(stop_after=3)
    old_log = (tmp_path / "log.jsonl").read_text()
    new_cfg = tiny_config(PAIRS["dino"](), fashion_root, seed=7)
    new = Trainer(new_cfg, tmp_path, build_dataset(new_cfg["data"], "train"), restart_on_config_change=True)
    new.train()
    assert (tmp_path / f"checkpoint.{old.config_hash}.pt").is_file()
    assert (tmp_path / f"log.{old.config_hash}.jsonl").read_text() == old_log
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == new.total_iters - 1
