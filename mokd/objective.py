"""MOKD's objective (docs/METHOD_NOTES.md §4): which terms are on, and one model's terms from the outputs.

For model m, with the other model's teacher written m':

    L_m = L_sm + L_st + lambda_m * (L_cm + L_ct)

L_sm / L_st: DINO terms of m's MLP-Head / T-Head against m's own teacher; L_cm: m's MLP-Head against
the MLP-Head of teacher m'; L_ct: m's T-Head on each local crop against teacher m''s T-Head searched
with m's query token of that crop (no centring). A term switched off in the config is left out; a
single model (the DINO baseline) has no cross terms. Everything the other model contributes is a
detached teacher output, so model m's terms give gradients to student m only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mokd.losses import DINOLoss, entropy, search_loss, student_log_probs
from mokd.models.heads import THead
from mokd.models.network import ViewOutputs

TERMS = ("sm", "st", "cm", "ct")


@dataclass(frozen=True)
class ActiveTerms:
    """Which loss terms are on, given the config's `losses` and whether this is a pair."""

    sm: bool
    st: bool
    cm: bool
    ct: bool
    search: bool

    @classmethod
    def from_config(cls, losses: dict[str, Any], n_models: int) -> "ActiveTerms":
        pair = n_models == 2
        return cls(
            sm=losses["self_mlp"],
            st=losses["self_thead"],
            cm=pair and losses["cross_mlp"],
            ct=pair and losses["cross_thead"],
            search=pair and losses["cross_thead"] and losses["search"],
        )

    @property
    def t_head(self) -> bool:
        return self.st or self.ct

    def names(self) -> list[str]:
        return [t for t in TERMS if getattr(self, t)]


def searched_targets(
    student: ViewOutputs, other_teacher: ViewOutputs, other_head: THead | None, search: bool, batch: int
) -> torch.Tensor:
    """ŝ, one row per (local crop, image): the other teacher's T-Head on its global-1 tokens, searched
    with this student's query token of that local crop; without search, its plain global-1 output."""
    n_local = student.mlp.shape[0] // batch - 2
    with torch.no_grad():
        if not search:
            return other_teacher.thead[:batch].repeat(n_local, 1)  # type: ignore[index]
        tokens, grid = other_teacher.first_tokens  # type: ignore[misc]
        queries = student.query[2 * batch :].detach()  # type: ignore[index]
        return other_head.forward_projected(tokens.repeat(n_local, 1, 1), grid, queries)  # type: ignore[union-attr]


class ModelObjective(nn.Module):
    """One model's loss terms, with the centres of its DINO terms (L_sm, L_st and L_cm keep their own)."""

    def __init__(self, active: ActiveTerms, out_dim: int, student_temp: float, center_momentum: float, lam: float) -> None:
        super().__init__()
        self.active, self.student_temp, self.lam = active, student_temp, lam
        self.sm = DINOLoss(out_dim, student_temp, center_momentum)
        self.st = DINOLoss(out_dim, student_temp, center_momentum)
        self.cm = DINOLoss(out_dim, student_temp, center_momentum)

    def forward(
        self,
        student: ViewOutputs,
        own: ViewOutputs,
        other: ViewOutputs | None,
        other_head: THead | None,
        teacher_temp: float,
        cross_teacher_temp: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The terms that are on, from the student's outputs on every crop and the teachers' on the globals.

        `teacher_temp` sharpens the model's own teachers (L_sm, L_st), `cross_teacher_temp` (default: the
        same) the other model's (L_cm, L_ct): the authors warm them up over different lengths for a CNN.
        """
        a = self.active
        cross_temp = teacher_temp if cross_teacher_temp is None else cross_teacher_temp
        batch = own.mlp.shape[0] // 2
        n_views = student.mlp.shape[0] // batch
        # Each head's log-probabilities once, shared by its terms (L_sm and L_cm; L_st and L_ct).
        mlp_lp = student_log_probs(student.mlp, self.student_temp) if a.sm or a.cm else None
        thead_lp = student_log_probs(student.thead, self.student_temp) if a.st or a.ct else None  # type: ignore[arg-type]
        terms: dict[str, torch.Tensor] = {}
        if a.sm:
            terms["sm"] = self.sm(mlp_lp, own.mlp, teacher_temp, n_views)
        if a.st:
            terms["st"] = self.st(thead_lp, own.thead, teacher_temp, n_views)
        if a.cm:
            terms["cm"] = self.cm(mlp_lp, other.mlp, cross_temp, n_views)  # type: ignore[union-attr]
        if a.ct:
            searched = searched_targets(student, other, other_head, a.search, batch)  # type: ignore[arg-type]
            terms["ct"] = search_loss(searched, thead_lp[2 * batch :], cross_temp)  # type: ignore[index]
        return terms

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """L = L_sm + L_st + lambda * (L_cm + L_ct), over the terms that are on."""
        own = sum(terms[t] for t in ("sm", "st") if t in terms)
        cross = sum(terms[t] for t in ("cm", "ct") if t in terms)
        return own + self.lam * cross  # type: ignore[return-value]

    @torch.no_grad()
    def monitor(self, own: ViewOutputs, teacher_temp: float) -> dict[str, float]:
        """What the log follows to spot a collapse: the MLP-Head teacher's entropy and its centre's norm."""
        probs = self.sm.teacher_probs(own.mlp.float(), teacher_temp)
        return {"teacher_entropy": float(entropy(probs)), "center_norm": float(self.sm.center.norm()), "teacher_temp": teacher_temp}
