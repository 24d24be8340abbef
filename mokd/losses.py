"""Loss terms of MOKD on plain tensors (docs/METHOD_NOTES.md §4): the DINO term with its centre, the search term.

Logits are laid out view-major: rows [v * B, (v + 1) * B) hold view v of the B images. Student views
are the 2 global crops followed by the local crops; teacher views are the 2 global crops. Every term
takes the student's log-probabilities, `student_log_probs(logits, student_temp)`, computed once per
head output and shared by every term and teacher view that uses it (neither recomputed nor kept once
more for the backward pass per pair).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def student_log_probs(student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    """log softmax(s / temp) in fp32, row by row."""
    return F.log_softmax(student_logits.float() / student_temp, dim=-1)


def cross_entropy(target_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over rows of H(p, s) = -sum p log s, given log s.

    The minus sign is applied to the row sums: the same numbers as summing -p * log s (negation is
    exact), without a negated copy of p kept for the backward pass.
    """
    return torch.sum(target_probs * log_probs, dim=-1).neg().mean()


def multiview_cross_entropy(teacher_probs: list[torch.Tensor], log_probs: list[torch.Tensor]) -> torch.Tensor:
    """Average of H over every (teacher view i, student view v) with v != i (same-view pairs skipped)."""
    total = log_probs[0].new_zeros(())
    pairs = 0
    for i, p in enumerate(teacher_probs):
        for v, log_s in enumerate(log_probs):
            if v == i:
                continue
            total = total + cross_entropy(p, log_s)
            pairs += 1
    return total / pairs


class DINOLoss(nn.Module):
    """DINO's self-distillation term with a centred, sharpened teacher.

    The teacher temperature is passed in by the caller (it follows a schedule). The centre is an EMA of
    the batch mean of the teacher logits, all-reduced across processes when a process group exists, and
    updated after the loss is computed.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        return F.softmax((teacher_logits - self.center) / teacher_temp, dim=-1)

    def forward(
        self,
        log_probs: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_temp: float,
        n_student_views: int,
        n_teacher_views: int = 2,
        update_center: bool = True,
    ) -> torch.Tensor:
        """The term, given the student's `student_log_probs(logits, self.student_temp)` on every view."""
        teacher_logits = teacher_logits.detach().float()
        probs = self.teacher_probs(teacher_logits, teacher_temp).chunk(n_teacher_views)
        loss = multiview_cross_entropy(list(probs), list(log_probs.chunk(n_student_views)))
        if update_center:
            self.update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        batch_center = teacher_logits.sum(dim=0, keepdim=True)
        count = torch.tensor([teacher_logits.shape[0]], dtype=batch_center.dtype, device=batch_center.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        batch_center = batch_center / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


def search_loss(searched_teacher_logits: torch.Tensor, log_probs: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """L_ct: cross-entropy between the searched teacher embedding and the student's, without centring.

    Both have one row per (local crop, image), row r of one matching row r of the other; the mean over
    rows is the average over local crops. `log_probs` is `student_log_probs(logits, student_temp)`.
    """
    probs = F.softmax(searched_teacher_logits.detach().float() / teacher_temp, dim=-1)
    return cross_entropy(probs, log_probs)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of probability rows (nats): ln K for a uniform teacher, 0 for a one-hot one."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1).mean()
