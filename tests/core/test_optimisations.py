"""Every optimisation of the training step keeps what a fixed-seed CPU run computes.

Each test compares the optimised code with a reference computation written here (the plain formula,
or the step as it was before), or with the same code under another switch: identical where the
arithmetic is the same, within float tolerance where kernels differ. See benchmarks/README.md for what
each optimisation buys.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from timm.layers import use_fused_attn
from torch import nn

import mokd.engine as engine
from mokd.engine import Trainer, clip_gradients
from mokd.losses import DINOLoss, search_loss, student_log_probs
from mokd.models.attention import attention_modules, set_fused_attention
from mokd.objective import searched_targets
from mokd.optim import with_implementation
from tests.core.helpers import assert_params_close, first_batch, loss_values, make_trainer, run_steps, student_params
from tests.core.tiny import CNN_B, VIT_A, VIT_B, model, tiny_config

# The smaller tiny networks, so that each comparison (two trainers, two steps each) stays quick.
PAIRS = {
    "cnn_vit": lambda: [model("cnn", CNN_B), model("vit", VIT_A, vit=True, lam=0.1)],
    "vit_vit": lambda: [model("big", VIT_A, vit=True), model("small", VIT_B, vit=True, lam=0.1)],
    "dino": lambda: [model("cnn", CNN_B)],
}


def small_config(models: list[dict[str, Any]], root: Path, **overrides: Any) -> dict[str, Any]:
    return tiny_config(models, root, **{"batch_size": 4, **overrides})


# ------------------------------------------------------- student log-probabilities shared between terms
def per_pair_cross_entropy(teacher_probs: torch.Tensor, student_logits: torch.Tensor, n_views: int, temp: float) -> torch.Tensor:
    """The DINO term the plain way: a log-softmax per (teacher view, student view) pair, then the mean."""
    total, pairs = student_logits.new_zeros(()), 0
    for i, p in enumerate(teacher_probs.chunk(2)):
        for v, s in enumerate(student_logits.chunk(n_views)):
            if v != i:
                total = total + torch.sum(-p * F.log_softmax(s / temp, dim=-1), dim=-1).mean()
                pairs += 1
    return total / pairs


def test_shared_log_probs_equal_the_per_pair_formula() -> None:
    torch.manual_seed(0)
    k, b, v = 32, 5, 4
    student, teacher = torch.randn(v * b, k), torch.randn(2 * b, k)
    loss = DINOLoss(k)
    expected = per_pair_cross_entropy(loss.teacher_probs(teacher, 0.04), student, v, 0.1)
    assert torch.allclose(loss(student_log_probs(student, 0.1), teacher, 0.04, v, update_center=False), expected, rtol=1e-6)
    searched = torch.randn(2 * b, k)
    p_search = torch.softmax(searched / 0.04, dim=-1)
    want = torch.sum(-p_search * F.log_softmax(student[: 2 * b] / 0.1, dim=-1), dim=-1).mean()
    assert torch.allclose(search_loss(searched, student_log_probs(student[: 2 * b], 0.1), 0.04), want, rtol=1e-6)


@pytest.mark.parametrize("kind", ["cnn_vit", "vit_vit", "dino"])
def test_model_terms_equal_the_per_pair_formula(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    """Every term of every model, as the trainer computes it (log-probabilities shared by L_sm/L_cm and
    L_st/L_ct), against the per-pair formula on the same network outputs and centres; the own terms with
    the own teacher temperature, the cross terms with the cross one (the authors' CNN warms them up over
    different lengths)."""
    trainer = make_trainer(small_config(PAIRS[kind](), fashion_root), tmp_path)
    crops = first_batch(trainer)
    torch.manual_seed(5)
    for model in trainer.models:  # non-zero centres, so that centring is part of what is compared
        for term in (model.objective.sm, model.objective.st, model.objective.cm):
            term.center.normal_(0, 0.1)
    centres = [{t: getattr(m.objective, t).center.clone() for t in ("sm", "st", "cm")} for m in trainer.models]
    teachers = trainer.teacher_outputs(crops)
    n_views, batch, temp, cross_temp = len(crops), crops[0].shape[0], 0.04, 0.061
    for i, model in enumerate(trainer.models):
        torch.manual_seed(1)
        student = model.student(crops, with_query=trainer.terms.search)
        other = teachers[1 - i] if len(trainer.models) == 2 else None
        head = trainer.models[1 - i].slot.teacher.t_head if other else None
        got = model.objective(student, teachers[i], other, head, temp, cross_temp)

        def probs(logits: torch.Tensor, centre: torch.Tensor, t: float = temp) -> torch.Tensor:
            return torch.softmax((logits - centre) / t, dim=-1)

        want = {"sm": per_pair_cross_entropy(probs(teachers[i].mlp, centres[i]["sm"]), student.mlp, n_views, 0.1)}
        if student.thead is not None:
            want["st"] = per_pair_cross_entropy(probs(teachers[i].thead, centres[i]["st"]), student.thead, n_views, 0.1)
        if other is not None:
            want["cm"] = per_pair_cross_entropy(probs(other.mlp, centres[i]["cm"], cross_temp), student.mlp, n_views, 0.1)
            searched = searched_targets(student, other, head, trainer.terms.search, batch)
            want["ct"] = torch.sum(-torch.softmax(searched / cross_temp, -1) * F.log_softmax(student.thead[2 * batch :] / 0.1, -1), -1).mean()
        assert set(got) == set(want)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


# ------------------------------------------------------------------- one backward per model in turn
def joint_step(trainer: Trainer, crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
    """The step before each model got its own backward: both students' forwards, then one backward of the sum."""
    step = trainer.step
    for m in trainer.models:
        for opt in m.optimizers:
            opt.apply(step)
            opt.optimizer.zero_grad(set_to_none=True)
    teachers = trainer.teacher_outputs(crops)
    results = [trainer.student_terms(i, crops, teachers) for i in range(len(trainer.models))]
    totals = [m.objective.total(terms) for m, (terms, _) in zip(trainer.models, results)]
    sum(totals).backward()
    trainer.apply_updates(step)
    trainer.step += 1
    logged = [({k: float(v) for k, v in terms.items()}, stats, float(t)) for (terms, stats), t in zip(results, totals)]
    return trainer.step_record(step, epoch, logged)


@pytest.mark.parametrize("kind", ["cnn_vit", "vit_vit"])
def test_per_model_backward_keeps_the_run(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    """Each student's forward and backward in turn vs both forwards then one backward of the sum.

    The models share no parameter and no gradient path, so every gradient is the same sum of the same
    contributions: losses and weights bitwise equal over several steps (drop-path included for ViTs).
    """
    models = PAIRS[kind]()
    for m in models:
        if m["backbone"]["arch"].startswith("vit"):
            m["backbone"]["drop_path"] = 0.1  # RNG drawn in the forward: the draw order must not change
    cfg = small_config(models, fashion_root)
    per_model, joint = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    crops = first_batch(per_model)
    got = run_steps(per_model, crops, n=3)
    torch.manual_seed(123)
    want = [joint_step(joint, crops, epoch=1) for _ in range(3)]
    assert loss_values(got, per_model) == loss_values(want, joint)
    for pa, pb in zip(student_params(per_model), student_params(joint)):
        assert torch.equal(pa, pb)
    for ma, mb in zip(per_model.models, joint.models):
        for ta, tb in zip(ma.slot.teacher.parameters(), mb.slot.teacher.parameters()):
            assert torch.equal(ta, tb)
        for ca, cb in zip(ma.objective.buffers(), mb.objective.buffers()):
            assert torch.equal(ca, cb)


# ------------------------------------------------------------------------------- foreach clipping
def loop_clip_gradients(params: list[nn.Parameter], clip: float) -> None:
    """DINO's clipping the plain way: one parameter tensor at a time."""
    for p in params:
        if p.grad is not None:
            norm = p.grad.detach().norm(2)
            p.grad.mul_(torch.clamp(clip / (norm + 1e-6), max=1.0))


def test_foreach_clipping_equals_the_loop() -> None:
    torch.manual_seed(0)
    shapes, scales = [(64, 32), (32,), (7, 3, 3, 3), (1,), (5, 5)], [10.0, 0.1, 3.0, 100.0, 1.0]
    params = [nn.Parameter(torch.zeros(s)) for s in shapes]
    grads = [torch.randn(s) * c for s, c in zip(shapes, scales)]
    twins = [nn.Parameter(torch.zeros(s)) for s in shapes]
    for p, q, g in zip(params, twins, grads):
        p.grad, q.grad = g.clone(), g.clone()
    params[4].grad = twins[4].grad = None  # a parameter without gradient is skipped
    clip_gradients(params, 3.0)
    loop_clip_gradients(twins, 3.0)
    for p, q in zip(params, twins):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad)
    assert float(params[0].grad.norm()) == pytest.approx(3.0, rel=1e-5)  # clipped
    assert torch.equal(params[1].grad, grads[1])  # under the cap: untouched


def test_foreach_clipping_keeps_a_training_run(fashion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config(PAIRS["cnn_vit"](), fashion_root)
    a, b = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    crops = first_batch(a)
    got = run_steps(a, crops)
    monkeypatch.setattr(engine, "clip_gradients", loop_clip_gradients)
    want = run_steps(b, crops)
    assert loss_values(got, a) == loss_values(want, b)
    for pa, pb in zip(student_params(a), student_params(b)):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------------------------- fused attention
def nets(trainer: Trainer) -> list[nn.Module]:
    return [n for m in trainer.models for n in (m.slot.student, m.slot.teacher)]


@pytest.mark.parametrize("kind", ["cnn_vit", "vit_vit"])
def test_fused_attention_is_on_and_matches_the_explicit_path(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    """T-Heads and ViT backbones use F.scaled_dot_product_attention; the explicit path gives the same run."""
    assert use_fused_attn(), "timm's fused attention is off (TIMM_FUSED_ATTN=0?)"
    cfg = small_config(PAIRS[kind](), fashion_root)
    fused, explicit = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    mods = [a for net in nets(fused) for a in attention_modules(net)]
    n_t_head = sum(len(attention_modules(net.t_head)) for net in nets(fused))
    assert n_t_head == 2 * 2 * cfg["t_head"]["depth"]  # 2 models x (student, teacher) x depth
    assert len(mods) > n_t_head and all(m.fused_attn for m in mods)
    assert sum(set_fused_attention(net, False) for net in nets(explicit)) == len(mods)
    crops = first_batch(fused)
    got, want = run_steps(fused, crops), run_steps(explicit, crops)
    assert loss_values(got, fused) == pytest.approx(loss_values(want, explicit), rel=1e-4, abs=1e-5)
    assert_params_close(fused, explicit, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- optimizer implementations
@pytest.mark.parametrize("impl", ["forloop", "fused"])
def test_optimizer_implementations_agree(impl: str, fashion_root: Path, tmp_path: Path) -> None:
    """foreach (what mokd.optim builds) vs the for-loop and fused kernels, for SGD (with a T-Head group on
    schedules of its own) and AdamW groups."""
    models = PAIRS["cnn_vit"]()
    models[0]["t_head_group"] = {"lr": 1e-3, "min_lr": 1e-5, "warmup_epochs": 0, "weight_decay": 0.04, "weight_decay_end": 0.4}
    cfg = small_config(models, fashion_root)
    foreach, other = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    assert all(o.optimizer.defaults["foreach"] for m in foreach.models for o in m.optimizers)
    assert [type(o.optimizer).__name__ for m in foreach.models for o in m.optimizers] == ["SGD", "AdamW"]
    assert [len(o.optimizer.param_groups) for m in foreach.models for o in m.optimizers] == [3, 2]
    for m in other.models:
        for sched in m.optimizers:
            sched.optimizer = with_implementation(sched.optimizer, impl)
    crops = first_batch(foreach)
    got, want = run_steps(foreach, crops), run_steps(other, crops)
    assert loss_values(got, foreach) == pytest.approx(loss_values(want, other), rel=1e-5)
    assert_params_close(foreach, other, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------- mixed precision
def test_losses_run_in_fp32_under_bf16_autocast(fashion_root: Path, tmp_path: Path) -> None:
    """Under bf16 autocast (CPU autocast stands in for the GPU's) every loss term is computed in fp32."""
    cfg = small_config(PAIRS["cnn_vit"](), fashion_root)
    mixed, full = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    mixed.precision = "bf16"  # the Trainer runs fp32 on CPU; force the GPU's policy
    crops = first_batch(mixed)
    terms_mixed = mixed.compute_losses(crops)
    terms_full = full.compute_losses(crops)
    for tm, tf in zip(terms_mixed, terms_full):
        assert set(tm) == {"sm", "st", "cm", "ct"}
        for name in tm:
            assert tm[name].dtype == torch.float32, name
            assert torch.isfinite(tm[name])
            assert float(tm[name].detach()) == pytest.approx(float(tf[name].detach()), rel=5e-2), name
    for m in mixed.models:
        assert all(c.dtype == torch.float32 for c in m.objective.buffers())


# ------------------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_compile_matches_eager(fashion_root: Path, tmp_path: Path) -> None:
    """`compile: true` gives the eager run's losses and weights (within float tolerance).

    Marked slow: a cold compile of even this tiny pair takes minutes on a 2-core CPU (the inductor
    cache makes later runs fast); benchmarks/README.md has the compile-time measurements.
    """
    models = [model("big", VIT_A, vit=True), model("small", VIT_B, vit=True, lam=0.1)]
    cfg = small_config(models, fashion_root)
    eager = make_trainer(cfg, tmp_path / "a")
    compiled = make_trainer(dict(cfg, compile=True), tmp_path / "b")
    assert all(m.student is not m.slot.student for m in compiled.models)  # wrapped by torch.compile
    crops = first_batch(eager)
    t0 = time.perf_counter()
    got = run_steps(compiled, crops)
    print(f"compile + {len(got)} steps: {time.perf_counter() - t0:.1f} s")
    want = run_steps(eager, crops)
    assert loss_values(got, compiled) == pytest.approx(loss_values(want, eager), rel=1e-4, abs=1e-5)
    assert_params_close(compiled, eager, rtol=1e-4, atol=1e-5)

