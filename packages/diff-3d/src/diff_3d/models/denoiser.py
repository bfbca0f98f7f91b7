"""The latent denoiser: DiT's adaLN-Zero blocks (:mod:`diffcore.nn.dit`) over an autoencoder's latent.

The latent is channels-first ``(B, C, *spatial)``: ``(B, C, K)`` for DiffGS (its ``K`` latent tokens as a 1-D
sequence) or ``(B, c, g, g, g)`` for L3DG (a latent grid, cut into 3-D patches). Fixed sin-cos positions.

Contract (diffcore's network contract): ``net(x_t, t, y=None, caption_ids=None) -> tensor shaped like x_t`` with
``t`` ``(B,)`` in [0, 1] (0 = data, 1 = noise); what the output means (velocity, for rectified flow) is the
pipeline's choice. Conditions, added to the time embedding:

- ``y`` ``(B,)`` class indices, ``num_classes`` being the null class (classifier-free guidance);
- ``caption_ids`` ``(B, L)`` word ids of :meth:`LatentDiT.tokenize` (0 = padding): the mean of their word
  embeddings; a caption with no word (all padding) is the null caption, a learned vector.

It is DiT (Peebles & Xie 2023) with a bag-of-words caption embedding beside the label table: the procedural
captions are a few words (colour and shape) whose order carries nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffcore.nn import DiTBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder
from diffcore.nn.dit import init_adaln_zero, patch_geometry
from diffcore.nn.embeddings import sincos_pos_embed, unpatchify
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

__all__ = ["LatentDiT", "LatentDiTConfig", "split_words"]

_WORD = re.compile(r"[a-z0-9-]+")


def split_words(caption: str) -> list[str]:
    """The words of ``caption``: lower-cased runs of letters, digits and ``-``."""
    return _WORD.findall(caption.lower())


@dataclass
class LatentDiTConfig:
    """Hyper-parameters of :class:`LatentDiT`: ``input_size`` the latent's spatial size (``(K,)`` or ``(g, g, g)``),
    ``patch_size`` (one int or one per axis), ``num_classes`` (0: none), ``vocabulary`` (caption words; empty: no
    caption conditioning), ``max_words`` per caption."""

    input_size: tuple[int, ...] = (8,)
    patch_size: tuple[int, ...] | int = 1
    in_channels: int = 16
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0
    vocabulary: list[str] = field(default_factory=list)
    max_words: int = 16

    def __post_init__(self) -> None:
        self.input_size, self.patch_size = patch_geometry(self.input_size, self.patch_size)
        self.vocabulary = list(self.vocabulary)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads: {self.num_heads} must divide hidden_size {self.hidden_size}")
        if self.num_classes < 0 or self.depth < 1:
            raise ValueError(
                f"num_classes >= 0 and depth >= 1 expected, got {self.num_classes}, {self.depth}"
            )


class LatentDiT(PretrainedModel):
    """DiT over a latent ``(B, C, *input_size)`` with class and/or caption conditioning (module docstring)."""

    config_class = LatentDiTConfig
    config: LatentDiTConfig

    def __init__(self, config: LatentDiTConfig) -> None:
        super().__init__(config)
        d, ndim = config.hidden_size, len(config.input_size)
        self.x_embedder = PatchEmbed(config.in_channels, d, config.patch_size, ndim=ndim)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(config.num_classes, d) if config.num_classes else None
        self.words = nn.Embedding(len(config.vocabulary) + 1, d, padding_idx=0) if config.vocabulary else None
        self.null_caption = nn.Parameter(torch.zeros(d)) if config.vocabulary else None
        grid = tuple(s // p for s, p in zip(config.input_size, config.patch_size))
        self.grid = grid
        self.register_buffer("pos_embed", sincos_pos_embed(d, grid)[None], persistent=False)
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final_layer = FinalLayer(d, math.prod(config.patch_size), config.in_channels)
        init_adaln_zero(
            self, [b.modulation for b in self.blocks] + [self.final_layer.modulation, self.final_layer.linear]
        )
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        if self.words is not None:
            nn.init.normal_(self.words.weight, std=0.02)

    @property
    def null_class(self) -> int:
        """The label meaning "no class" (``num_classes``)."""
        return self.config.num_classes

    def tokenize(self, captions: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """Captions -> word ids ``(B, max_words)`` (0 = padding; word ``i`` of the vocabulary is ``i + 1``).
        A word outside the vocabulary, or too many words, is an error naming it."""
        if not self.config.vocabulary:
            raise ValueError("captions: this model takes no captions (its vocabulary is empty)")
        index = {w: i + 1 for i, w in enumerate(self.config.vocabulary)}
        out = torch.zeros((len(captions), self.config.max_words), dtype=torch.long)
        for row, caption in enumerate(captions):
            words = split_words(caption)
            if len(words) > self.config.max_words:
                raise ValueError(
                    f"captions: {caption!r} has {len(words)} words, more than max_words = {self.config.max_words}"
                )
            for j, w in enumerate(words):
                if w not in index:
                    raise ValueError(
                        f"captions: the word {w!r} of {caption!r} is not in the model's vocabulary"
                    )
                out[row, j] = index[w]
        return out.to(device if device is not None else self.pos_embed.device)

    def _condition(self, t: Tensor, y: Tensor | None, caption_ids: Tensor | None) -> Tensor:
        c = self.t_embedder(t)
        b = t.shape[0]
        if self.y_embedder is not None:
            labels = (
                y if y is not None else torch.full((b,), self.null_class, device=t.device, dtype=torch.long)
            )
            c = c + self.y_embedder(labels)
        elif y is not None:
            raise ValueError("y: this model is not class-conditional (num_classes = 0); pass y=None")
        if self.words is not None and self.null_caption is not None:
            ids = (
                caption_ids
                if caption_ids is not None
                else torch.zeros((b, 1), device=t.device, dtype=torch.long)
            )
            real = (ids > 0).float()
            count = real.sum(1, keepdim=True)
            mean = (self.words(ids) * real[..., None]).sum(1) / count.clamp_min(1.0)
            c = c + torch.where(count > 0, mean, self.null_caption.to(mean.dtype).expand_as(mean))
        elif caption_ids is not None:
            raise ValueError("caption_ids: this model takes no captions; pass caption_ids=None")
        return F.silu(c)

    def forward(
        self, x: Tensor, t: Tensor, y: Tensor | None = None, caption_ids: Tensor | None = None
    ) -> Tensor:
        """``x``: ``(B, C, *input_size)``, ``t``: ``(B,)`` in [0, 1] -> ``(B, C, *input_size)``."""
        cfg = self.config
        if (
            x.ndim != 2 + len(cfg.input_size)
            or x.shape[1] != cfg.in_channels
            or tuple(x.shape[2:]) != cfg.input_size
        ):
            raise ValueError(
                f"x: expected (B, {cfg.in_channels}, {', '.join(map(str, cfg.input_size))}), got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected shape ({x.shape[0]},), got {tuple(t.shape)}")
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self._condition(t, y, caption_ids)
        for block in self.blocks:
            h = block(h, c)
        return unpatchify(self.final_layer(h, c), self.grid, cfg.patch_size, cfg.in_channels)
