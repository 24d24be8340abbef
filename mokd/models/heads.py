"""The two projection heads of MOKD: the DINO MLP-Head and the transformer T-Head with query search."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mokd.models.attention import attention_probs
from mokd.models.pos_embed import interpolate_grid


INITS = ("dino", "fan_in")


def init_linear_weight(weight: torch.Tensor, scheme: str) -> None:
    """dino: truncated normal with std 0.02 (DINO's heads, the paper's); fan_in: std 1 / sqrt(fan_in).

    DINO's std 0.02 is calibrated for its 2048-wide layers; in a narrow head each such layer shrinks
    its input, and the bottleneck reaching the L2 normalisation is tiny (docs/DEFAULT_SCALE.md).
    """
    if scheme not in INITS:
        raise ValueError(f"unknown initialisation {scheme!r}; known: {INITS}")
    trunc_normal_(weight, std=0.02 if scheme == "dino" else weight.shape[1] ** -0.5)


class WeightNormLinear(nn.Module):
    """Bias-free linear layer whose rows are direction / ||direction|| times a gain.

    With `fix_gain=True` the gain is frozen at 1 (DINO's `norm_last_layer`), which stabilises training.
    `init` scales the initial directions (dino or fan_in, see `init_linear_weight`): the output does
    not depend on their norm, but their gradient is divided by it.
    """

    def __init__(self, in_dim: int, out_dim: int, fix_gain: bool = True, init: str = "dino") -> None:
        super().__init__()
        self.direction = nn.Parameter(torch.empty(out_dim, in_dim))
        init_linear_weight(self.direction, init)
        self.gain = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fix_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.gain * F.normalize(self.direction, dim=1)
        return F.linear(x, weight)


class MLPHead(nn.Module):
    """DINO head: MLP to a bottleneck, L2-normalise, weight-normalised linear to K prototypes.

    The defaults are the paper's head. Options for narrow heads (docs/METHOD_NOTES.md §3, off by
    default): `batch_norm` (BatchNorm1d after each hidden linear layer, DINO's `use_bn_in_head`),
    `init` and `prototype_init` (dino or fan_in), `last_bias` (a bias on the layer to the bottleneck).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        batch_norm: bool = False,
        init: str = "dino",
        last_bias: bool = True,
        prototype_init: str = "dino",
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            last = i == n_layers - 1
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=last_bias or not last))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                init_linear_weight(m.weight, init)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fix_gain=norm_last_layer, init=prototype_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class THead(nn.Module):
    """Transformer head over the last spatial tokens, with an optional prepended query token.

    The backbone tokens are projected to the pair's common width `dim` (a 1x1 convolution for a CNN map,
    which is a per-token linear layer; identity for a ViT whose width already is `dim`), get learned
    positional embeddings interpolated to their grid, go through `depth` transformer blocks and a final
    norm, are mean-pooled and mapped to K prototypes. With `query` given (the other model's query token,
    width `dim`), every block attends jointly over [query; tokens] and the query position is dropped
    before pooling: the cross-attention feature search.
    """

    def __init__(
        self,
        token_dim: int,
        dim: int,
        out_dim: int,
        depth: int = 3,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        base_grid: int = 7,
        norm_last_layer: bool = False,
        pos_embed_interpolation: str = "dino",
    ) -> None:
        super().__init__()
        self._config = dict(dim=dim, out_dim=out_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            base_grid=base_grid, norm_last_layer=norm_last_layer,
                            pos_embed_interpolation=pos_embed_interpolation)
        self.pos_embed_interpolation = pos_embed_interpolation
        self.dim = dim
        self.proj = nn.Identity() if token_dim == dim else nn.Linear(token_dim, dim)
        self.base_grid = base_grid
        self.pos_embed = nn.Parameter(torch.zeros(1, base_grid * base_grid, dim))
        trunc_normal_(self.pos_embed, std=0.02)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = norm(dim)
        self.last_layer = WeightNormLinear(dim, out_dim, fix_gain=norm_last_layer)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Backbone tokens (B, N, token_dim) -> (B, N, dim)."""
        return self.proj(tokens)

    def query(self, projected: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        """What this model hands the other model's teacher (width dim): a ViT's [CLS] projected, a CNN's
        mean projected token (its average-pooled 1x1-projected map); `projected` is `project(tokens)`."""
        return self.proj(cls) if cls is not None else projected.mean(dim=1)

    def config(self) -> dict[str, Any]:
        """The constructor arguments besides `token_dim` (which the backbone gives): what an export stores."""
        return dict(self._config)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Learned positional embeddings for a (h, w) token grid (mokd/models/pos_embed.py)."""
        return interpolate_grid(self.pos_embed, (self.base_grid, self.base_grid), grid, self.pos_embed_interpolation)

    def embed_tokens(self, projected: torch.Tensor, grid: tuple[int, int], query: torch.Tensor | None) -> torch.Tensor:
        """Positional embeddings added, query (B, dim) prepended when given: the blocks' input."""
        x = projected + self.pos_embed_for(grid)
        if query is not None:
            x = torch.cat([query.unsqueeze(1), x], dim=1)
        return x

    def forward_projected(
        self, projected: torch.Tensor, grid: tuple[int, int], query: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, K) from already projected tokens (B, N, dim); see the class docstring."""
        x = self.embed_tokens(projected, grid, query)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if query is not None:
            x = x[:, 1:]
        return self.last_layer(x.mean(dim=1))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], query: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_projected(self.project(tokens), grid, query)

    def attention_maps(self, tokens: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        """Softmax attention of every block over the token grid, (B, heads, N, N) each."""
        x = self.embed_tokens(self.project(tokens), grid, None)
        maps = []
        for block in self.blocks:
            maps.append(attention_probs(block, x))
            x = block(x)
        return maps

