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
