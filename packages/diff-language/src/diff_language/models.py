"""The BD3-LM transformer: a time-independent bidirectional-within-block transformer with RoPE and a KV cache.

BD3-LM / MDLM with the log-linear schedule need no time conditioning (Sahoo et al. 2024, Sec. 3.2;
Arriola et al. 2025, Sec. 3), so the network is a plain pre-norm transformer over token ids. It meets the
network contract ``net(x_t, t) -> logits`` (``t`` is accepted and ignored) and is trained through
:meth:`BD3LM.forward_train` on ``[x_t, x_0]`` with the block-diffusion mask (:mod:`diff_language.masks`).
Attention runs through SDPA with an explicit boolean mask, or FlexAttention with a block mask
(``attention="flex"``, or ``"auto"``: FlexAttention on CUDA when torch has it).

Rotary embeddings (Su et al. 2021) make attention depend only on relative positions, which is what lets
:mod:`diff_language.sampling` slide a window past the training context.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_language.config import LanguageModelConfig
from diff_language.masks import bd3_mask, bd3_mask_mod, block_causal_mask

__all__ = ["BD3LM", "BD3LMConfig", "RingKVCache"]


@dataclass
class RingKVCache:
    """A preallocated KV cache of ``capacity`` token slots per layer, written in place (static shapes).

    keys, values: per layer (B, heads, capacity, head_dim), rotary already applied.
    slots: (T,) long, where the keys/values of the tokens of the next call are written.
    valid: (capacity,) bool, the slots the next call attends to (its own slots included).
    The caller moves ``slots`` and ``valid`` in place between calls; nothing is concatenated or reallocated,
    so a call can be captured in a CUDA graph. Attention has no order, so a ring buffer of whole blocks
    serves a sliding window without copying.
    """

    keys: list[Tensor]
    values: list[Tensor]
    slots: Tensor
    valid: Tensor

    @classmethod
    def empty(
        cls, config: BD3LMConfig, batch: int, capacity: int, tokens_per_call: int, device, dtype
    ) -> RingKVCache:
        """Zeroed buffers for ``batch`` sequences; ``slots`` = the first ``tokens_per_call``, nothing valid."""
        head_dim = config.dim // config.n_heads
        shape = (batch, config.n_heads, capacity, head_dim)
        return cls(
            keys=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)],
            values=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)],
            slots=torch.arange(tokens_per_call, device=device),
            valid=torch.zeros(capacity, dtype=torch.bool, device=device),
        )


try:  # FlexAttention exists from torch 2.5
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

    HAS_FLEX = True
except ImportError:  # pragma: no cover - older torch
    HAS_FLEX = False


@dataclass
class BD3LMConfig(LanguageModelConfig):
    """A BD3-LM's configuration: its shape and block structure (:class:`LanguageModelConfig`) and vocabulary.

    Attributes:
        vocab_size: tokenizer vocabulary + 1; the last id is ``[MASK]`` (``mask_id``).
    """

    vocab_size: int = 258

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size: expected >= 2 (tokens + mask), got {self.vocab_size}")

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1


def rotary(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos, sin tables (T, head_dim) for integer ``positions`` (T,)."""
    inv = 1.0 / (
        base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    angles = positions.float()[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, H, T, D) by the float32 tables (T, D); the result keeps ``x``'s dtype.

    The rotation is computed in float32 (as the tables are) and cast back, so that a bfloat16 model's queries
    stay bfloat16 and meet the bfloat16 keys and values of its cache in attention.
    """
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


@functools.lru_cache(maxsize=16)
def _flex_block_mask(seq_len: int, block_size: int, device: str) -> BlockMask:
    n = 2 * seq_len
    return create_block_mask(bd3_mask_mod(seq_len, block_size), None, None, n, n, device=device)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions, over a block mask (FlexAttention) or a dense mask,
    optionally writing keys and values into a ring KV cache: ``(B, T, D)`` -> ``(B, T, D)``."""

    def __init__(self, config: BD3LMConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | BlockMask | None,
        cache: tuple[Tensor, Tensor, Tensor] | None,
    ) -> Tensor:
        """cache: ``(keys, values, slots)`` of a :class:`RingKVCache` layer; ``mask`` is then its ``valid``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            keys, values, slots = cache
            keys.index_copy_(2, slots, k.to(keys.dtype))
            values.index_copy_(2, slots, v.to(values.dtype))
            k, v = keys, values
        if HAS_FLEX and isinstance(mask, BlockMask):
            attend = _compiled_flex() if q.is_cuda else flex_attention
            y = attend(q, k, v, block_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """A pre-norm transformer block of :class:`BD3LM`: attention then MLP, each residual with dropout."""

    def __init__(self, config: BD3LMConfig) -> None:
        super().__init__()
        hidden = int(config.mlp_ratio * config.dim)
        self.norm1 = nn.LayerNorm(config.dim)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, mask, cache):
        """``x: (B, T, D)`` through attention (rotary ``cos``, ``sin``; ``mask``; ``cache`` as in
        :meth:`Attention.forward`) and the MLP."""
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class BD3LM(PretrainedModel):
    """Block diffusion language model backbone; outputs raw logits (B, T, vocab_size)."""

    config_class = BD3LMConfig

    def __init__(self, config: BD3LMConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def use_flex(self, device: torch.device) -> bool:
        """Whether training attention goes through FlexAttention on ``device``."""
        mode = self.config.attention
        return HAS_FLEX and (mode == "flex" or (mode == "auto" and device.type == "cuda"))

    def forward_tokens(
        self,
        tokens: Tensor,
        positions: Tensor,
        mask: Tensor | BlockMask | None = None,
        cache: RingKVCache | None = None,
        head: bool = True,
    ) -> Tensor:
        """Logits (B, T, V) of ``tokens`` (B, T) at integer ``positions`` (T,).

        mask: bool (T, T) (True = attend), a FlexAttention block mask, or None (attend to all).
        cache: a :class:`RingKVCache`; the tokens' keys/values are written at ``cache.slots`` and the tokens
        attend to the slots marked ``cache.valid`` (``mask`` must then be None).
        head: False skips the final norm and the output layer and returns the last hidden states (B, T, D):
        for a call that only writes keys and values into ``cache``.
        """
        head_dim = self.config.dim // self.config.n_heads
        cos, sin = rotary(positions, head_dim, self.config.rope_base)
        x = self.embed(tokens)
        if cache is not None:
            if mask is not None:
                raise ValueError("mask: expected None when a cache is given (cache.valid is the mask)")
            mask = cache.valid.view(1, -1)  # (1, capacity): broadcast over the queries
        for i, block in enumerate(self.blocks):
            layer = None if cache is None else (cache.keys[i], cache.values[i], cache.slots)
            x = block(x, cos, sin, mask, layer)
        return self.head(self.norm(x)) if head else x

    def forward_train(self, x_t: Tensor, x0: Tensor) -> Tensor:
        """Vectorised BD3-LM training pass over ``[x_t, x_0]`` (Arriola et al. 2025, Sec. 3.2).

        x_t, x0: (B, L) with L = ``config.seq_len``. Returns logits (B, L, V) for the noisy half.
        """
        n = x_t.shape[1]
        if n != self.config.seq_len or x0.shape != x_t.shape:
            raise ValueError(
                f"x_t, x0: expected (B, {self.config.seq_len}) each, got {tuple(x_t.shape)} and {tuple(x0.shape)}"
            )
        pos = torch.arange(n, device=x_t.device).repeat(2)
        if self.use_flex(x_t.device):
            mask = _flex_block_mask(n, self.config.block_size, str(x_t.device))
        else:
            mask = bd3_mask(n, self.config.block_size, device=x_t.device)
        logits = self.forward_tokens(torch.cat([x_t, x0], dim=1), pos, mask)
        return logits[:, :n]

    def forward(self, x_t: Tensor, t: Tensor | None = None, x0: Tensor | None = None) -> Tensor:
        """Network contract ``net(x_t, t) -> logits`` (B, T, V) with the block-causal mask over ``x_t`` (B, T).

        Each block sees itself and the blocks before it as given (for ``L' = L``: MDLM's full attention).
        ``t`` is ignored: the model is time-independent. With ``x0`` (B, L) this is the training pass
        :meth:`forward_train` (so a DDP-wrapped model trains through ``forward``).
        """
        if x0 is not None:
            return self.forward_train(x_t, x0)
        pos = torch.arange(x_t.shape[1], device=x_t.device)
        mask = block_causal_mask(x_t.shape[1], self.config.block_size, device=x_t.device)
        return self.forward_tokens(x_t, pos, mask)
