"""Explicit attention probabilities of a timm transformer block (its fused kernel does not return them)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block


def attention_probs(block: Block, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention (B, heads, N, N) of `block`'s self-attention on the block input `x`."""
    attn = block.attn
    y = block.norm1(x)
    b, n, c = y.shape
    qkv = attn.qkv(y).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def attention_modules(root: torch.nn.Module) -> list[torch.nn.Module]:
    """Every timm attention module under `root` (those with a `fused_attn` switch)."""
    return [m for m in root.modules() if hasattr(m, "fused_attn")]


def set_fused_attention(root: torch.nn.Module, enabled: bool) -> int:
    """Switch timm's fused kernel (F.scaled_dot_product_attention) on or off under `root`: off runs the
    explicit softmax(QK^T)V path, e.g. to compare the two or to count FLOPs. Returns the module count."""
    mods = attention_modules(root)
    for m in mods:
        m.fused_attn = enabled
    return len(mods)
