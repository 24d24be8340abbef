"""Switchable implementation variants of the training step, for before/after measurements in one process.

A variant is a named set of switches applied to a built Trainer (and, for module-level functions,
while that trainer's step runs), so that the code as it is now and the code as it was before an
optimisation can be timed side by side, interleaved, on the same machine:

  attention  "fused": timm's fused kernel (F.scaled_dot_product_attention) where timm enables it
             (the default); "math": the explicit softmax(QK^T)V path in every transformer block (T-Heads
             and ViT backbones); "thead_math": the explicit path in the T-Heads only
  optimizer  None: as built by mokd.optim; "forloop" / "foreach" / "fused": the same optimizers
             (same groups and hyper-parameters) rebuilt with that implementation
  clip       None: mokd.engine.clip_gradients as it is; "loop": the per-parameter Python loop it
             replaced (REFERENCE below)
  losses     None: Trainer.student_terms as it is; "reference": the loss code before the student
             log-probabilities were shared between terms (REFERENCE below)
  backward   None: Trainer.train_step as it is (one student's forward and backward at a time);
             "joint": both students' forwards, then one backward of the sum (REFERENCE below)
  compile    True: the students are torch.compile'd (the pretrain config's `compile: true`)

The REFERENCE functions are the project's own earlier code, kept verbatim here (not imported from the
package) so the "before" numbers stay reproducible after the package has changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import mokd.engine as engine
from mokd.models import attention
from mokd.optim import with_implementation
from mokd.losses import DINOLoss
from mokd.objective import searched_targets

ATTENTION = (None, "fused", "math", "thead_math")
OPTIMIZER = (None, "forloop", "foreach", "fused")
CLIP = (None, "loop")
LOSSES = (None, "reference")
BACKWARD = (None, "joint")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    switches: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = {"attention": ATTENTION, "optimizer": OPTIMIZER, "clip": CLIP, "losses": LOSSES, "backward": BACKWARD,
                   "compile": (False, True)}
        for key, value in self.switches.items():
            if key not in allowed:
                raise ValueError(f"variant {self.name!r}: unknown switch {key!r}; allowed: {sorted(allowed)}")
            if value not in allowed[key]:
                raise ValueError(f"variant {self.name!r}: switch {key}={value!r} not in {allowed[key]}")

    @property
    def compile(self) -> bool:
        return bool(self.switches.get("compile", False))

    def apply(self, trainer: engine.Trainer) -> None:
        """Build-time switches: attention path, optimizer implementation, loss code."""
        attention = self.switches.get("attention")
        if attention in ("math", "thead_math"):
            set_fused_attention(trainer, False, t_head_only=attention == "thead_math")
        optimizer = self.switches.get("optimizer")
        if optimizer is not None:
            rebuild_optimizers(trainer, optimizer)
        if self.switches.get("losses") == "reference":
            trainer.student_terms = reference_student_terms.__get__(trainer)  # type: ignore[method-assign]
        if self.switches.get("backward") == "joint":
            trainer.train_step = reference_joint_train_step.__get__(trainer)  # type: ignore[method-assign]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Step-time switches (module-level functions the step calls)."""
        if self.switches.get("clip") == "loop":
            saved = engine.clip_gradients
            engine.clip_gradients = reference_clip_gradients
            try:
                yield
            finally:
                engine.clip_gradients = saved
        else:
            yield


# The variants the benchmark knows by name. "current" is the code as it is; "before" is the step as it
# was before the optimisations kept in this change (see benchmarks/README.md).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("current", "the code as it is"),
        Variant("before", "before the optimisations: per-parameter clipping loop, log-softmax per (teacher, student) "
                "view pair, one backward of both students' losses", {"clip": "loop", "losses": "reference", "backward": "joint"}),
        Variant("sdpa_off", "explicit attention (no F.scaled_dot_product_attention) in T-Heads and ViT backbones",
                {"attention": "math"}),
        Variant("thead_sdpa_off", "explicit attention in the T-Heads only", {"attention": "thead_math"}),
        Variant("opt_forloop", "optimizers with the for-loop implementation", {"optimizer": "forloop"}),
        Variant("opt_foreach", "optimizers with the foreach implementation", {"optimizer": "foreach"}),
        Variant("opt_fused", "optimizers with the fused implementation", {"optimizer": "fused"}),
        Variant("clip_loop", "per-parameter clipping loop (the reference)", {"clip": "loop"}),
        Variant("loss_reference", "loss code before sharing the student log-probabilities", {"losses": "reference"}),
        Variant("joint_backward", "both students' forwards, then one backward of the sum", {"backward": "joint"}),
        Variant("compile", "torch.compile'd students", {"compile": True}),
    ]
}


def get_variant(name: str) -> Variant:
    """A known variant by name; "NAME#2" is another instance of NAME (a control for instance-to-instance noise)."""
    base, _, copy = name.partition("#")
    if base not in VARIANTS:
        raise ValueError(f"unknown variant {base!r}; known: {', '.join(VARIANTS)}")
    v = VARIANTS[base]
    return Variant(name, v.description + (f" (instance {copy})" if copy else ""), dict(v.switches)) if copy else v


# ------------------------------------------------------------------------------------------ switches
def networks(trainer: engine.Trainer, t_head_only: bool = False) -> list[nn.Module]:
    """Every student and teacher network of a trainer (or only their T-Heads)."""
    nets = [net for model in trainer.models for net in (model.slot.student, model.slot.teacher)]
    return [n.t_head for n in nets if n.t_head is not None] if t_head_only else nets


def attention_modules(trainer: engine.Trainer, t_head_only: bool = False) -> list[nn.Module]:
    """Every timm attention module of every student and teacher (or of their T-Heads)."""
    return [m for net in networks(trainer, t_head_only) for m in attention.attention_modules(net)]


def set_fused_attention(trainer: engine.Trainer, enabled: bool, t_head_only: bool = False) -> int:
    return sum(attention.set_fused_attention(net, enabled) for net in networks(trainer, t_head_only))


def rebuild_optimizers(trainer: engine.Trainer, implementation: str) -> None:
    """Replace each optimizer by the same optimizer (groups, hyper-parameters) with another implementation."""
    for model in trainer.models:
        for sched in model.optimizers:
            sched.optimizer = with_implementation(sched.optimizer, implementation)


# ----------------------------------------------------------------- REFERENCE: the code before the change
def reference_clip_gradients(params: list[nn.Parameter], clip: float) -> None:
    """DINO's clipping: each parameter tensor's gradient norm is capped at `clip` on its own."""
    for p in params:
        if p.grad is not None:
            norm = p.grad.detach().norm(2)
            p.grad.mul_(torch.clamp(clip / (norm + 1e-6), max=1.0))


def _ref_cross_entropy(target_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    return torch.sum(-target_probs * F.log_softmax(student_logits / student_temp, dim=-1), dim=-1).mean()


def _ref_multiview_cross_entropy(
    teacher_probs: list[torch.Tensor], student_logits: list[torch.Tensor], student_temp: float
) -> torch.Tensor:
    total = student_logits[0].new_zeros(())
    pairs = 0
    for i, p in enumerate(teacher_probs):
        for v, s in enumerate(student_logits):
            if v == i:
                continue
            total = total + _ref_cross_entropy(p, s, student_temp)
            pairs += 1
    return total / pairs


def _ref_dino_loss(
    loss: DINOLoss, student_logits: torch.Tensor, teacher_logits: torch.Tensor, teacher_temp: float, n_student_views: int
) -> torch.Tensor:
    teacher_logits = teacher_logits.detach().float()
    probs = loss.teacher_probs(teacher_logits, teacher_temp).chunk(2)
    value = _ref_multiview_cross_entropy(list(probs), list(student_logits.float().chunk(n_student_views)), loss.student_temp)
    loss.update_center(teacher_logits)
    return value


def _ref_search_loss(
    searched_teacher_logits: torch.Tensor, student_logits: torch.Tensor, teacher_temp: float, student_temp: float
) -> torch.Tensor:
    probs = F.softmax(searched_teacher_logits.detach().float() / teacher_temp, dim=-1)
    return _ref_cross_entropy(probs, student_logits.float(), student_temp)


def reference_student_terms(
    self: engine.Trainer, i: int, crops: list[torch.Tensor], teachers: list[Any]
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Trainer.student_terms with the loss code before the change (bound to a trainer by Variant.apply):
    a log-softmax per (teacher view, student view) pair and term."""
    n_views = len(crops)
    batch = crops[0].shape[0]
    model = self.models[i]
    other = 1 - i
    temp = float(model.teacher_temp[self.step])
    losses = model.objective
    with self._autocast():
        s, t = model.student(crops, with_query=self.terms.search), teachers[i]
        terms: dict[str, torch.Tensor] = {}
        if self.terms.sm:
            terms["sm"] = _ref_dino_loss(losses.sm, s.mlp, t.mlp, temp, n_views)
        if self.terms.st:
            terms["st"] = _ref_dino_loss(losses.st, s.thead, t.thead, temp, n_views)
        if self.terms.cm:
            terms["cm"] = _ref_dino_loss(losses.cm, s.mlp, teachers[other].mlp, temp, n_views)
        if self.terms.ct:
            head = self.models[other].slot.teacher.t_head
            searched = searched_targets(s, teachers[other], head, self.terms.search, batch)
            terms["ct"] = _ref_search_loss(searched, s.thead[2 * batch :], temp, self.cfg["losses"]["student_temp"])
    return terms, losses.monitor(t, temp)


def reference_joint_train_step(self: engine.Trainer, crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
    """Trainer.train_step before each model got its own backward: both forwards, then one backward."""
    step = self.step
    for model in self.models:
        for opt in model.optimizers:
            opt.apply(step)
    teachers = self.teacher_outputs(crops)
    results = [self.student_terms(i, crops, teachers) for i in range(len(self.models))]
    totals = [model.objective.total(terms) for model, (terms, _) in zip(self.models, results)]
    for model, (terms, _) in zip(self.models, results):
        self.check_finite(model, terms)
    for model in self.models:
        for opt in model.optimizers:
            opt.optimizer.zero_grad(set_to_none=True)
    sum(m.scaler.scale(t) for m, t in zip(self.models, totals)).backward()  # type: ignore[union-attr]
    self.apply_updates(step)
    self.step += 1
    logged = [({k: float(v.detach()) for k, v in terms.items()}, stats, float(total.detach()))
              for (terms, stats), total in zip(results, totals)]
    return self.step_record(step, epoch, logged)
