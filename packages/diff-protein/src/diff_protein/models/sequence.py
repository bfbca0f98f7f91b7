"""Transformers over amino-acid tokens: the taxonomy-conditioned masked-diffusion denoiser (TaxDiff) and an
independent taxonomy classifier used to measure label adherence.

:class:`SequenceDenoiser` follows TaxDiff (Zongying et al. 2024): a transformer on the noisy sequence
whose blocks are modulated (adaLN-Zero, DiT, Peebles & Xie 2023) by the sum of a time embedding and a
taxonomy-label embedding; the label table has one extra "null" row for classifier-free guidance. It
outputs logits over the 21 tokens (20 amino acids + mask) that the SUBS parameterisation
(:func:`diffcore.discrete.subs_log_probs`) turns into ``p(x_0 | x_t)``.

Shapes: ``x_t: (B, L)`` int64 tokens, ``t: (B,)`` in [0, 1] (0 = data), ``y: (B,)`` int64 labels in
``[0, num_classes]`` (``num_classes`` = null), ``mask: (B, L)`` bool, True on real residues (padding keys
are ignored by attention). Output ``(B, L, vocab_size)``.
"""

from __future__ import annotations

import torch
from diffcore.nn.attention import Attention
from diffcore.nn.dit import Mlp, modulate
from diffcore.nn.embeddings import LabelEmbedder, TimestepEmbedder, sincos_embedding_1d
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_protein.models.configs import SequenceDenoiserConfig, TaxonomyClassifierConfig

__all__ = [
    "SequenceDenoiser",
    "SequenceDenoiserConfig",
    "TaxonomyClassifier",
    "TaxonomyClassifierConfig",
]


class _Block(nn.Module):
    """adaLN-Zero block (DiT Fig. 3) with a key-padding mask."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        sa, ca, ga, sm, cm, gm = self.modulation(c)[:, None].chunk(6, dim=-1)
        x = x + ga * self.attn(modulate(self.norm1(x), sa, ca), mask=mask)
        return x + gm * self.mlp(modulate(self.norm2(x), sm, cm))


class SequenceDenoiser(PretrainedModel):
    """TaxDiff-style denoiser ``(x_t, t, y, mask) -> logits (B, L, vocab_size)``."""

    config_class = SequenceDenoiserConfig

    def __init__(self, config: SequenceDenoiserConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.tokens = nn.Embedding(config.vocab_size, d)
        self.time = TimestepEmbedder(d)
        self.labels = LabelEmbedder(config.num_classes, d)
        self.blocks = nn.ModuleList(
            _Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, config.vocab_size)
        nn.init.zeros_(self.final_mod.weight)
        nn.init.zeros_(self.final_mod.bias)

    @property
    def null_class(self) -> int:
        """The label index meaning "no label" (classifier-free guidance)."""
        return self.labels.null_class

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Logits ``(B, L, vocab_size)``; ``y=None`` is the unconditional (null-label) branch."""
        b, n = x_t.shape
        if t.shape != (b,):
            raise ValueError(f"t: expected shape ({b},), got {tuple(t.shape)}")
        if y is None:
            y = torch.full((b,), self.null_class, dtype=torch.long, device=x_t.device)
        if ((y < 0) | (y > self.null_class)).any():
            raise ValueError(f"y: expected labels in [0, {self.null_class}], got {y.tolist()}")
        pos = sincos_embedding_1d(self.config.hidden_size, torch.arange(n, device=x_t.device))
        h = self.tokens(x_t) + pos.to(self.tokens.weight.dtype)[None]
        c = nn.functional.silu(self.time(t) + self.labels(y))
        for block in self.blocks:
            h = block(h, c, mask)
        shift, scale = self.final_mod(c)[:, None].chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(h), shift, scale))


class TaxonomyClassifier(PretrainedModel):
    """``tokens (B, L), mask (B, L) -> logits (B, num_classes)``; trained apart from the generator, it
    judges whether generated sequences carry their label (TaxDiff's adherence check)."""

    config_class = TaxonomyClassifierConfig

    def __init__(self, config: TaxonomyClassifierConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.tokens = nn.Embedding(config.vocab_size, d)
        layer = nn.TransformerEncoderLayer(d, config.num_heads, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.head = nn.Linear(d, config.num_classes)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Class logits ``(B, num_classes)`` (mean over real residues)."""
        n = tokens.shape[1]
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask
        pos = sincos_embedding_1d(self.config.hidden_size, torch.arange(n, device=tokens.device))
        h = self.encoder(self.tokens(tokens) + pos[None], src_key_padding_mask=~mask)
        m = mask.to(h.dtype)[..., None]
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1.0))
