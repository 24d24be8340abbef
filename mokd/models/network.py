"""A model of the pair: backbone with MLP-Head and optional T-Head, and its student/teacher slot."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mokd.models.backbone import Backbone, BackboneSpec
from mokd.models.heads import MLPHead, THead


@dataclass
class ViewOutputs:
    """Outputs over a list of crops, view-major (rows v*B..(v+1)*B are view v).

    mlp: (V*B, K) MLP-Head logits; thead: (V*B, K) T-Head logits or None; query: (V*B, D) query tokens
    or None; first_tokens: projected T-Head tokens (B, N, D) and grid of the first view, for the search.
    """

    mlp: torch.Tensor
    thead: torch.Tensor | None
    query: torch.Tensor | None
    first_tokens: tuple[torch.Tensor, tuple[int, int]] | None


def resolution_groups(crops: list[torch.Tensor]) -> list[list[int]]:
    """Consecutive crops of the same size, batched into one backbone pass each."""
    groups: list[list[int]] = []
    for i, crop in enumerate(crops):
        if groups and crops[groups[-1][-1]].shape[-2:] == crop.shape[-2:]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class Network(nn.Module):
    """Backbone + MLP-Head (+ T-Head): one student or one teacher."""

    def __init__(self, backbone: Backbone, mlp_head: MLPHead, t_head: THead | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.mlp_head = mlp_head
        self.t_head = t_head

    def forward(self, crops: list[torch.Tensor], with_query: bool = False) -> ViewOutputs:
        mlp, thead, query = [], [], []
        first_tokens = None
        for group in resolution_groups(crops):
            x = torch.cat([crops[i] for i in group])
            out = self.backbone(x)
            mlp.append(self.mlp_head(out.pooled))
            if self.t_head is None:
                continue
            projected = self.t_head.project(out.tokens)
            thead.append(self.t_head.forward_projected(projected, out.grid))
            if first_tokens is None:
                first_tokens = (projected[: crops[group[0]].shape[0]], out.grid)
            if with_query:
                query.append(self.t_head.query(projected, out.cls))
        return ViewOutputs(
            mlp=torch.cat(mlp),
            thead=torch.cat(thead) if thead else None,
            query=torch.cat(query) if query else None,
            first_tokens=first_tokens,
        )

    def last_layers(self) -> list[nn.Module]:
        """Prototype layers frozen during the first epoch(s)."""
        heads = [self.mlp_head.last_layer]
        if self.t_head is not None:
            heads.append(self.t_head.last_layer)
        return heads


def build_network(model_cfg: dict[str, Any], run_cfg: dict[str, Any], with_t_head: bool, teacher: bool) -> Network:
    """Build a student (or teacher: no drop-path) network from a validated pretrain config."""
    spec = BackboneSpec.from_config(model_cfg["backbone"])
    if teacher:
        spec = dataclasses.replace(spec, drop_path=0.0)
    backbone = Backbone(spec)
    head_cfg = model_cfg["mlp_head"]
    mlp_head = MLPHead(
        backbone.feature_dim,
        run_cfg["out_dim"],
        hidden_dim=head_cfg["hidden_dim"],
        bottleneck_dim=head_cfg["bottleneck_dim"],
        n_layers=head_cfg["n_layers"],
        norm_last_layer=head_cfg["norm_last_layer"],
        batch_norm=head_cfg["batch_norm"],
        init=head_cfg["init"],
        last_bias=head_cfg["last_bias"],
        prototype_init=head_cfg["prototype_init"],
    )
    t_head = None
    if with_t_head:
        t_cfg = run_cfg["t_head"]
        t_head = THead(
            backbone.token_dim,
            t_cfg["dim"],
            run_cfg["out_dim"],
            depth=t_cfg["depth"],
            num_heads=t_cfg["num_heads"],
            mlp_ratio=t_cfg["mlp_ratio"],
            base_grid=global_grid(backbone, run_cfg["crops"]["global_size"]),
            norm_last_layer=t_cfg["norm_last_layer"],
            pos_embed_interpolation=t_cfg["pos_embed_interpolation"],
        )
    return Network(backbone, mlp_head, t_head)


def global_grid(backbone: Backbone, size: int) -> int:
    """Side of the token grid of a global crop (where the T-Head's positions are learned)."""
    with torch.no_grad():
        was_training = backbone.training
        backbone.eval()
        grid = backbone(torch.zeros(1, 3, size, size)).grid
        backbone.train(was_training)
    return max(grid)


class ModelSlot(nn.Module):
    """A student network and its teacher, the EMA of every student parameter (heads included)."""

    def __init__(self, name: str, model_cfg: dict[str, Any], run_cfg: dict[str, Any], with_t_head: bool) -> None:
        super().__init__()
        self.name = name
        self.cfg = model_cfg
        self.student = build_network(model_cfg, run_cfg, with_t_head, teacher=False)
        self.teacher = build_network(model_cfg, run_cfg, with_t_head, teacher=True)
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- m * teacher + (1 - m) * student, for every parameter."""
        s_params = [p.detach() for p in self.student.parameters()]
        t_params = list(self.teacher.parameters())
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, s_params, alpha=1 - momentum)

