"""Every optimisation of the training step keeps what a fixed-seed CPU run computes.

Each test runs the same tiny config twice, with an optimisation on and off (the "off" side is the
earlier code kept in benchmarks/variants.py, or a switch of the same code), and compares losses and
weights: identical where the arithmetic is the same, within float tolerance where kernels differ.
See benchmarks/README.md for what each optimisation buys.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from timm.layers import use_fused_attn
from torch import nn

from benchmarks.variants import (
    attention_modules,
    get_variant,
    rebuild_optimizers,
    reference_clip_gradients,
    set_fused_attention,
)
from mokd.data import build_dataset
from mokd.engine import Trainer, clip_gradients
from mokd.losses import DINOLoss, cross_entropy, multiview_cross_entropy, search_loss
from tests.core.tiny import CNN_B, VIT_A, VIT_B, model, tiny_config

TERMS = ("L_sm", "L_st", "L_cm", "L_ct")
# The smaller tiny networks, so that each comparison (two trainers, two steps each) stays quick.
PAIRS = {
    "cnn_vit": lambda: [model("cnn", CNN_B), model("vit", VIT_A, vit=True, lam=0.1)],
    "vit_vit": lambda: [model("big", VIT_A, vit=True), model("small", VIT_B, vit=True, lam=0.1)],
    "dino": lambda: [model("cnn", CNN_B)],
}


def small_config(models: list[dict[str, Any]], root: Path, **overrides: Any) -> dict[str, Any]:
    return tiny_config(models, root, **{"batch_size": 4, **overrides})


def make_trainer(cfg: dict[str, Any], out: Path) -> Trainer:
    return Trainer(cfg, out, build_dataset(cfg["data"], "train"))


def first_batch(trainer: Trainer) -> list[torch.Tensor]:
    return next(iter(trainer.data.epoch(0)))


def run_steps(trainer: Trainer, crops: list[torch.Tensor], n: int = 2, epoch: int = 1) -> list[dict[str, Any]]:
    torch.manual_seed(123)  # drop-path masks, where a model has drop-path
    return [trainer.train_step(crops, epoch) for _ in range(n)]


def loss_values(records: list[dict[str, Any]], trainer: Trainer) -> list[float]:
    return [r[m.slot.name][t] for r in records for m in trainer.models for t in TERMS if t in r[m.slot.name]]


def student_params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach() for m in trainer.models for p in m.slot.student.parameters()]


def assert_params_close(a: Trainer, b: Trainer, rtol: float, atol: float) -> None:
    for pa, pb in zip(student_params(a), student_params(b)):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol)


# ------------------------------------------------------- student log-probabilities shared between terms
def test_loss_helpers_equal_the_per_pair_formula() -> None:
    torch.manual_seed(0)
    k, b, v = 32, 5, 4
    student, teacher = torch.randn(v * b, k), torch.randn(2 * b, k)
    loss = DINOLoss(k)
    probs = loss.teacher_probs(teacher, 0.04).chunk(2)
    expected = sum(
        cross_entropy(p, s, 0.1) for i, p in enumerate(probs) for j, s in enumerate(student.chunk(v)) if i != j
    ) / (2 * v - 2)
    assert torch.equal(loss(student, teacher, 0.04, v, update_center=False), expected)
    assert torch.equal(multiview_cross_entropy(list(probs), list(student.chunk(v)), 0.1), expected)
    searched = torch.randn(2 * b, k)
    p_search = torch.softmax(searched / 0.04, dim=-1)
    assert torch.equal(search_loss(searched, student[: 2 * b], 0.04, 0.1), cross_entropy(p_search, student[: 2 * b], 0.1))


@pytest.mark.parametrize("kind", ["cnn_vit", "vit_vit", "dino"])
def test_shared_log_probs_keep_the_losses(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    """Log-softmax once per head output (shared by L_sm/L_cm and L_st/L_ct) vs once per view pair and term."""
    cfg = small_config(PAIRS[kind](), fashion_root)
    shared, reference = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    get_variant("loss_reference").apply(reference)
    crops = first_batch(shared)
    got, want = run_steps(shared, crops), run_steps(reference, crops)
    # The first step's losses are computed from identical weights by the same arithmetic: bitwise equal.
    assert loss_values(got[:1], shared) == loss_values(want[:1], reference)
    # Later steps differ only by the order in which the backward pass sums the same gradient contributions.
    assert loss_values(got, shared) == pytest.approx(loss_values(want, reference), rel=1e-5)
    assert_params_close(shared, reference, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------- one backward per model in turn
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
    get_variant("joint_backward").apply(joint)
    crops = first_batch(per_model)
    got, want = run_steps(per_model, crops, n=3), run_steps(joint, crops, n=3)
    assert loss_values(got, per_model) == loss_values(want, joint)
    for pa, pb in zip(student_params(per_model), student_params(joint)):
        assert torch.equal(pa, pb)
    for ma, mb in zip(per_model.models, joint.models):
        for ta, tb in zip(ma.slot.teacher.parameters(), mb.slot.teacher.parameters()):
            assert torch.equal(ta, tb)
        for ca, cb in zip(ma.losses.buffers(), mb.losses.buffers()):
            assert torch.equal(ca, cb)


# ------------------------------------------------------------------------------- foreach clipping
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
    reference_clip_gradients(twins, 3.0)
    for p, q in zip(params, twins):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad)
    assert float(params[0].grad.norm()) == pytest.approx(3.0, rel=1e-5)  # clipped
    assert torch.equal(params[1].grad, grads[1])  # under the cap: untouched


def test_foreach_clipping_keeps_a_training_run(fashion_root: Path, tmp_path: Path) -> None:
    cfg = small_config(PAIRS["cnn_vit"](), fashion_root)
    a, b = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    crops = first_batch(a)
    got = run_steps(a, crops)
    with get_variant("clip_loop").active():
        want = run_steps(b, crops)
    assert loss_values(got, a) == loss_values(want, b)
    for pa, pb in zip(student_params(a), student_params(b)):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------------------------- fused attention
@pytest.mark.parametrize("kind", ["cnn_vit", "vit_vit"])
def test_fused_attention_is_on_and_matches_the_explicit_path(kind: str, fashion_root: Path, tmp_path: Path) -> None:
    """T-Heads and ViT backbones use F.scaled_dot_product_attention; the explicit path gives the same run."""
    assert use_fused_attn(), "timm's fused attention is off (TIMM_FUSED_ATTN=0?)"
    cfg = small_config(PAIRS[kind](), fashion_root)
    fused, explicit = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    mods = attention_modules(fused)
    n_t_head = len(attention_modules(fused, t_head_only=True))
    assert n_t_head == 2 * 2 * cfg["t_head"]["depth"]  # 2 models x (student, teacher) x depth
    assert len(mods) > n_t_head and all(m.fused_attn for m in mods)
    assert set_fused_attention(explicit, False) == len(mods)
    crops = first_batch(fused)
    got, want = run_steps(fused, crops), run_steps(explicit, crops)
    assert loss_values(got, fused) == pytest.approx(loss_values(want, explicit), rel=1e-4, abs=1e-5)
    assert_params_close(fused, explicit, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- optimizer implementations
@pytest.mark.parametrize("impl", ["forloop", "fused"])
def test_optimizer_implementations_agree(impl: str, fashion_root: Path, tmp_path: Path) -> None:
    """foreach (what mokd.optim builds) vs the for-loop and fused kernels, for SGD and AdamW groups."""
    models = PAIRS["cnn_vit"]()
    models[0]["t_head_optimizer"] = {"name": "adamw", "lr": 1e-3, "min_lr": 1e-5, "warmup_epochs": 0,
                                     "weight_decay": 0.04, "weight_decay_end": 0.4}
    cfg = small_config(models, fashion_root)
    foreach, other = make_trainer(cfg, tmp_path / "a"), make_trainer(cfg, tmp_path / "b")
    assert all(o.optimizer.defaults["foreach"] for m in foreach.models for o in m.optimizers)
    assert [type(o.optimizer).__name__ for m in foreach.models for o in m.optimizers] == ["SGD", "AdamW", "AdamW"]
    rebuild_optimizers(other, impl)
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
    terms_mixed, _ = mixed.compute_losses(crops, 0)
    terms_full, _ = full.compute_losses(crops, 0)
    for tm, tf in zip(terms_mixed, terms_full):
        assert set(tm) == {"sm", "st", "cm", "ct"}
        for name in tm:
            assert tm[name].dtype == torch.float32, name
            assert torch.isfinite(tm[name])
            assert float(tm[name].detach()) == pytest.approx(float(tf[name].detach()), rel=5e-2), name
    for m in mixed.models:
        assert all(c.dtype == torch.float32 for c in m.losses.buffers())


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

