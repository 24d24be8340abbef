"""benchmarks/pair_diagnosis.py: per-term gradients that leave the run as it was."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.pair_diagnosis import term_gradients
from benchmarks.workflow_config import load_workflow_config, pretrain_config
from tests.core.helpers import first_batch, make_trainer, run_steps, slot_states


def tiny_config(fashion_root: Path, roles: list[str]) -> dict[str, Any]:
    config = load_workflow_config("config/test.yaml")
    config["datasets"]["pretrain"]["spec"]["root"] = str(fashion_root)
    return {**pretrain_config(config, roles), "device": "cpu"}


def test_measuring_does_not_change_the_run(fashion_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(fashion_root, ["r18", "vit_t"])
    plain, measured = make_trainer(cfg, tmp_path / "a"), make_trainer(copy.deepcopy(cfg), tmp_path / "b")
    crops = first_batch(plain)
    run_steps(plain, crops, n=1)
    grads = term_gradients(measured, crops)
    run_steps(measured, crops, n=1)
    a, b = slot_states(plain), slot_states(measured)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for m_plain, m_measured in zip(plain.models, measured.models):
        for (k, va), vb in zip(m_plain.objective.state_dict().items(), m_measured.objective.state_dict().values()):
            assert torch.equal(va, vb), k
    assert set(grads) == {"r18", "vit_t"}
    assert set(grads["r18"]) == {"sm", "st", "cm", "ct"}
    for model in measured.models:
        terms = grads[model.name]
        assert [terms[t]["weight"] for t in ("sm", "st", "cm", "ct")] == [1.0, 1.0, model.objective.lam, model.objective.lam]
        assert all(math.isfinite(t["grad_backbone"]) and t["grad_backbone"] > 0 for t in terms.values())
        assert terms["sm"]["grad_t_head"] == 0.0 and terms["st"]["grad_mlp_head"] == 0.0  # each head's own terms


def test_the_only_term_has_the_whole_gradient(fashion_root: Path, tmp_path: Path) -> None:
    """A DINO baseline's L_sm gradient into the backbone is the total's, taken independently here."""
    trainer = make_trainer(tiny_config(fashion_root, ["r18"]), tmp_path / "run")
    crops = first_batch(trainer)
    measured = term_gradients(trainer, crops)["r18"]
    assert list(measured) == ["sm"]
    teachers = trainer.teacher_outputs(crops)
    terms, _ = trainer.student_terms(0, crops, teachers)
    params = list(trainer.models[0].slot.student.backbone.parameters())
    grads = torch.autograd.grad(trainer.models[0].objective.total(terms), params)
    expected = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert math.isclose(measured["sm"]["grad_backbone"], expected, rel_tol=1e-5)
    assert math.isclose(measured["sm"]["value"], float(terms["sm"].detach()), rel_tol=1e-6)


def test_steps_stops_each_run_early(fashion_root: Path, tmp_path: Path) -> None:
    """`--steps N` diagnoses the first N steps of the real schedule and stops there."""
    from benchmarks.pair_diagnosis import backbone_ratios, diagnose_run

    cfg = tiny_config(fashion_root, ["r18", "vit_t"])
    run = diagnose_run(cfg, every=1, out_dir=tmp_path / "run", steps=2)
    assert run["steps"] == 2 and [p["step"] for p in run["points"]] == [0, 1]
    ratios = {(r["model"], r["term"]): r for r in backbone_ratios(run)}
    assert set(ratios) == {(m, t) for m in ("r18", "vit_t") for t in ("st", "cm", "ct")}
    for (model, term), r in ratios.items():
        by_hand = [p["models"][model][term]["grad_backbone"] / p["models"][model]["sm"]["grad_backbone"] for p in run["points"]]
        assert math.isclose(r["mean"], sum(by_hand) / 2) and r["min"] == min(by_hand) and r["n"] == 2
