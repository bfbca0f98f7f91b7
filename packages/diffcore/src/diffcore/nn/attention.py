"""Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

Shapes: tokens ``(B, N, D)``; heads ``(B, H, N, D/H)``. Masks are boolean key-padding masks
``(B, M)`` with ``True`` = a real token that may be attended to. SDPA picks the fastest kernel it
can (FlashAttention without a mask, memory-efficient attention with one). A query whose keys are
all masked has no defined output (SDPA returns NaN); key-padding masks must keep at least one key.

Optional pieces: QK-norm (RMSNorm of queries and keys per head, Dehghani et al. 2023 "Scaling
Vision Transformers to 22B"; used by SD3) and rotary embeddings (:mod:`diffcore.nn.embeddings`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.nn.embeddings import apply_rope

Rope = tuple[Tensor, Tensor]


class RMSNorm(nn.Module):
    """RMS normalisation with a learned gain (Zhang & Sennrich 2019) over the last axis of width ``dim``.

    The gain is cast to the input's dtype so bf16 activations (autocast) keep torch's fused kernel.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """``x / rms(x) * weight`` over the last dimension (the weight cast to ``x``'s dtype)."""
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads: {num_heads} must be >= 1 and divide the width {dim}")
    return dim // num_heads


def key_padding_to_attn_mask(mask: Tensor | None) -> Tensor | None:
    """``(B, M)`` bool key-padding mask -> ``(B, 1, 1, M)`` mask broadcastable over heads and queries."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(
            f"mask: expected a (B, M) bool key-padding mask, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask[:, None, None, :]


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention, heads merged back: ``(B, H, N, Dh)`` x3 -> ``(B, N, H * Dh)``.

    ``mask``: optional ``(B, M)`` bool key-padding mask over the ``M`` keys.
    """
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding_to_attn_mask(mask))
    return out.transpose(1, 2).flatten(2)


class QKVProjection(nn.Module):
    """One fused linear to queries, keys and values, with optional per-head QK-norm and RoPE.

    ``(B, N, D)`` -> ``q, k, v`` each ``(B, H, N, D/H)`` (views of one matmul output, no copies).
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _check_heads(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``x``: ``(B, N, D)``; ``rope``: optional ``(cos, sin)`` each ``(N, D/H)``."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).unbind(2)
        q, k, v = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2), v.transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v


class Attention(nn.Module):
    """Multi-head self-attention: ``(B, N, D)`` -> ``(B, N, D)``.

    (DiT's fused form, attending straight from the q/k/v projection in Triton, is
    :class:`diffcore.nn.dit_fused.FusedAttention`.)
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        self.qkv = QKVProjection(dim, num_heads, bias=qkv_bias, qk_norm=qk_norm)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: Rope | None = None) -> Tensor:
        """``x``: ``(B, N, D)``; ``mask``: optional ``(B, N)`` bool key-padding mask; ``rope``: (cos, sin)."""
        return self.proj(attend(*self.qkv(x, rope), mask))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from ``x`` ``(B, N, D)`` to ``context`` ``(B, M, context_dim)``."""

    def __init__(
        self, dim: int, context_dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _check_heads(dim, num_heads)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, N, D)``; ``context``: ``(B, M, C)``; ``context_mask``: ``(B, M)`` bool, True keeps."""
        b, n, _ = x.shape
        m = context.shape[1]
        q = self.q_norm(self.q(x).view(b, n, self.num_heads, self.head_dim)).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, self.num_heads, self.head_dim).unbind(2)
        k, v = self.k_norm(k).transpose(1, 2), v.transpose(1, 2)
        return self.proj(attend(q, k, v, context_mask))
