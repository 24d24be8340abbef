"""Loss terms against independent computations written here."""

from __future__ import annotations

import math

import pytest
import torch

from mokd.losses import DINOLoss, entropy, search_loss, student_log_probs


def lp(logits: torch.Tensor) -> torch.Tensor:
    return student_log_probs(logits, 0.1)


def reference_dino(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, t_temp: float, s_temp: float, n_s: int) -> float:
    """Plain double loop over images and view pairs, with explicit exp / sum normalisation."""
    b = teacher.shape[0] // 2
    total, pairs = 0.0, 0
    for i in range(2):
        for v in range(n_s):
            if v == i:
                continue
            acc = 0.0
            for n in range(b):
                t = teacher[i * b + n] - center[0]
                p = torch.exp(t / t_temp) / torch.exp(t / t_temp).sum()
                s = student[v * b + n] / s_temp
                log_q = s - torch.log(torch.exp(s).sum())
                acc += float(-(p * log_q).sum())
            total += acc / b
            pairs += 1
    return total / pairs


def test_dino_loss_matches_reference() -> None:
    torch.manual_seed(0)
    k, b, n_s = 7, 3, 4
    loss = DINOLoss(k, student_temp=0.1, center_momentum=0.9)
    loss.center.copy_(torch.randn(1, k) * 0.1)
    center = loss.center.clone()
    student, teacher = torch.randn(n_s * b, k), torch.randn(2 * b, k)
    got = float(loss(lp(student), teacher, teacher_temp=0.05, n_student_views=n_s))
    assert got == pytest.approx(reference_dino(student, teacher, center, 0.05, 0.1, n_s), rel=1e-5)


def test_uniform_teacher_and_student_give_ln_k() -> None:
    k = 50
    loss = DINOLoss(k)
    got = float(loss(lp(torch.zeros(3 * 4, k)), torch.zeros(2 * 4, k), teacher_temp=0.04, n_student_views=3))
    assert got == pytest.approx(math.log(k), rel=1e-6)
    assert float(entropy(torch.full((2, k), 1.0 / k))) == pytest.approx(math.log(k), rel=1e-6)


def test_same_view_pairs_are_skipped() -> None:
    """Student views identical to the teacher's own view contribute nothing: with 2 student views only the
    two cross pairs count, so swapping the student's views changes the loss the way the reference says."""
    torch.manual_seed(1)
    k, b = 5, 2
    s, t = torch.randn(2 * b, k), torch.randn(2 * b, k)
    got = float(DINOLoss(k)(lp(s), t, 0.07, 2, update_center=False))
    assert got == pytest.approx(reference_dino(s, t, torch.zeros(1, k), 0.07, 0.1, 2), rel=1e-5)


def test_center_update_is_ema_of_batch_mean_after_loss() -> None:
    torch.manual_seed(2)
    k = 6
    loss = DINOLoss(k, center_momentum=0.9)
    teacher, student = torch.randn(8, k), torch.randn(12, k)
    before = loss.center.clone()
    value = loss(lp(student), teacher, 0.04, 3)
    # The loss used the old centre ...
    assert float(value) == pytest.approx(reference_dino(student, teacher, before, 0.04, 0.1, 3), rel=1e-5)
    # ... and the centre moved to 0.9 * old + 0.1 * batch mean.
    assert torch.allclose(loss.center, 0.9 * before + 0.1 * teacher.mean(0, keepdim=True), atol=1e-6)


def test_search_loss_has_no_centre_and_matches_reference() -> None:
    torch.manual_seed(3)
    t, s = torch.randn(6, 4), torch.randn(6, 4)
    p = torch.softmax(t / 0.04, dim=-1)
    ref = float((-(p * torch.log_softmax(s / 0.1, dim=-1)).sum(-1)).mean())
    assert float(search_loss(t, lp(s), 0.04)) == pytest.approx(ref, rel=1e-6)
    # A constant shift of the teacher logits does not change its softmax (no centre needed or used).
    assert float(search_loss(t + 5.0, lp(s), 0.04)) == pytest.approx(ref, rel=1e-5)


def test_teacher_gets_no_gradient() -> None:
    s = torch.randn(6, 4, requires_grad=True)
    t = torch.randn(4, 4, requires_grad=True)
    DINOLoss(4)(lp(s), t, 0.04, 3).backward()
    assert s.grad is not None and t.grad is None
