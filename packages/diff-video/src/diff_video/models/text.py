"""A small text encoder trained from scratch with the video model (offline: no download, no pretrained weights).

Captions are lower-cased and split into words (letters, digits and ``-``); the vocabulary is the training
captions' words, fixed when the encoder is built and saved in its config. A word outside it is an error naming
the word (nothing is silently dropped). Token ids: 0 = padding, 1 = ``[CLS]`` (always first, so the empty
caption, the classifier-free-guidance null condition, is one real token), then the words in sorted order.

The encoder is a pre-norm transformer (``torch.nn.TransformerEncoder``) with learned positions; it returns the
token states ``context`` ``(B, L, width)``, the key-padding mask ``(B, L)`` (True = a real token) and ``pooled``
``(B, width)`` (the ``[CLS]`` state), which the :class:`~diff_video.models.dit.VideoDiT` takes as
``context`` / ``context_mask`` / ``pooled``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

__all__ = ["TextConditioned", "TextEncoder", "TextEncoderConfig", "caption_vocabulary", "split_words"]

_WORD = re.compile(r"[a-z0-9-]+")
PAD, CLS = 0, 1


def split_words(caption: str) -> list[str]:
    """The words of ``caption``: lower-cased runs of letters, digits and ``-``."""
    return _WORD.findall(caption.lower())


def caption_vocabulary(captions: Iterable[str]) -> list[str]:
    """The sorted set of words in ``captions``."""
    return sorted({w for c in captions for w in split_words(c)})


@dataclass
class TextEncoderConfig:
    """The text encoder: ``vocabulary`` (its words), ``width``, ``layers``, ``heads`` and ``max_length`` (tokens,
    ``[CLS]`` included)."""

    vocabulary: list[str] = field(default_factory=list)
    width: int = 128
    layers: int = 2
    heads: int = 4
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"text heads: {self.heads} must divide the text width {self.width}")
        if self.max_length < 2 or self.layers < 1:
            raise ValueError(
                f"text max_length >= 2 and layers >= 1 expected, got {self.max_length}, {self.layers}"
            )


class TextEncoder(PretrainedModel):
    """Word-level transformer text encoder (see the module docstring)."""

    config_class = TextEncoderConfig
    config: TextEncoderConfig

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__(config)
        self.index = {w: i + 2 for i, w in enumerate(config.vocabulary)}
        self.tokens = nn.Embedding(len(config.vocabulary) + 2, config.width, padding_idx=PAD)
        self.positions = nn.Parameter(torch.randn(config.max_length, config.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, 4 * config.width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)

    @property
    def width(self) -> int:
        """The width of ``context`` and ``pooled``."""
        return self.config.width

    def tokenize(self, captions: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """``(B, max_length)`` int64 token ids; raises naming a caption that has an unknown word or is too long."""
        rows = []
        for caption in captions:
            words = split_words(caption)
            unknown = [w for w in words if w not in self.index]
            if unknown:
                raise ValueError(
                    f"prompt: {caption!r} has words the text encoder never saw in training: {unknown} "
                    f"(its vocabulary: {' '.join(self.config.vocabulary)})"
                )
            if len(words) + 1 > self.config.max_length:
                raise ValueError(
                    f"prompt: {caption!r} has {len(words)} words; the text encoder takes at most "
                    f"{self.config.max_length - 1}"
                )
            ids = [CLS] + [self.index[w] for w in words]
            rows.append(ids + [PAD] * (self.config.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=device)

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``input_ids`` ``(B, L)`` -> ``(context (B, L, width), mask (B, L) bool, pooled (B, width))``."""
        mask = input_ids != PAD
        h = self.tokens(input_ids) + self.positions[: input_ids.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        return h, mask, h[:, 0]


class TextConditioned(nn.Module):
    """The video network and its text encoder as one module, the way they train together:
    ``forward(x, t, input_ids, **cond)`` encodes the tokens and calls ``backbone(x, t, context=, context_mask=,
    pooled=, **cond)``."""

    def __init__(self, backbone: nn.Module, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.backbone, self.text_encoder = backbone, text_encoder

    def forward(self, x: Tensor, t: Tensor, input_ids: Tensor, **cond: Tensor) -> Tensor:
        """The video network's output for ``x`` at ``t``, with the caption ``input_ids`` encoded into
        ``context``, ``context_mask`` and ``pooled``."""
        context, mask, pooled = self.text_encoder(input_ids)
        return self.backbone(x, t, context=context, context_mask=mask, pooled=pooled, **cond)
