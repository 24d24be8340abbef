"""Learned positional embeddings moved to another token grid (a local crop, a T-Head's other grid).

Two arithmetics, chosen by config (`pos_embed_interpolation`; docs/METHOD_NOTES.md §3, §8):
- `dino`, the authors' (DINO's `interpolate_pos_encoding`, in their ViT and both T-Heads): bicubic
  `F.interpolate` with `scale_factor = (n + 0.1) / N` per side and no antialiasing. Given a scale
  factor, torch maps output pixel j to input coordinate (j + 0.5) / s - 0.5 with s the factor itself,
  not n / N, so the result differs from resizing to n x n.
- `resize`: bicubic to the target size (timm's `resample_abs_pos_embed` for a ViT backbone,
  antialiased when shrinking; `F.interpolate(size=...)` for a T-Head).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

METHODS = ("dino", "resize")


def interpolate_grid(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int], method: str) -> torch.Tensor:
    """Embeddings (1, H*W, D) of an `old` (H, W) grid for a `new` (h, w) grid: (1, h*w, D).

    The same grid returns `pos` itself. `resize` here is a plain bicubic resize (the T-Heads'); a ViT
    backbone's `resize` is timm's own resampling (`install_pos_embed`)."""
    if method not in METHODS:
        raise ValueError(f"unknown positional-embedding interpolation {method!r}; known: {METHODS}")
    if tuple(new) == tuple(old):
        return pos
    (oh, ow), (h, w) = old, new
    dim = pos.shape[-1]
    grid = pos.reshape(1, oh, ow, dim).permute(0, 3, 1, 2)
    if method == "dino":
        out = F.interpolate(grid, scale_factor=((h + 0.1) / oh, (w + 0.1) / ow), mode="bicubic", align_corners=False)
    else:
        out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    if tuple(out.shape[-2:]) != (h, w):  # (n + 0.1) / N * N rounds down to n: a guard, not an expected path
        raise RuntimeError(f"positional embeddings interpolated to {tuple(out.shape[-2:])}, expected {(h, w)}")
    return out.permute(0, 2, 3, 1).reshape(1, h * w, dim)


def _dino_pos_embed(self: Any, x: torch.Tensor) -> torch.Tensor:
    """timm VisionTransformer._pos_embed (dynamic image size) with the patch embeddings moved by DINO's
    arithmetic: prefix tokens (class, registers) concatenated, positions added, position dropout."""
    b, h, w, c = x.shape
    x = x.view(b, -1, c)
    n_prefix_pos = 0 if self.no_embed_class else self.num_prefix_tokens
    prefix_pos, patch_pos = self.pos_embed[:, :n_prefix_pos], self.pos_embed[:, n_prefix_pos:]
    patch_pos = interpolate_grid(patch_pos, tuple(self.patch_embed.grid_size), (h, w), "dino")
    pos = torch.cat([prefix_pos, patch_pos], dim=1)
    prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
    if self.no_embed_class:
        x = torch.cat(prefix + [x + pos], dim=1)
    else:
        x = torch.cat(prefix + [x], dim=1) + pos
    return self.pos_drop(x)


def install_pos_embed(vit: torch.nn.Module, method: str) -> None:
    """Make a timm ViT built with `dynamic_img_size=True` move its position embeddings by `method`.

    `resize` keeps timm's own `_pos_embed`; `dino` replaces it on this instance, so that every path
    through the embeddings (forward_features, get_intermediate_layers, our attention maps) uses it."""
    if method not in METHODS:
        raise ValueError(f"unknown positional-embedding interpolation {method!r}; known: {METHODS}")
    if method == "dino":
        if not getattr(vit, "dynamic_img_size", False) or vit.pos_embed is None:
            raise ValueError("DINO's position-embedding interpolation needs a ViT with dynamic_img_size and pos_embed")
        vit._pos_embed = types.MethodType(_dino_pos_embed, vit)

