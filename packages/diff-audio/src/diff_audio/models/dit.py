"""The latent diffusion transformer of diff-audio: timing and text conditioning around diffcore's MMDiT.

Stable Audio (Evans et al. 2024, "Fast Timing-Conditioned Latent Audio Diffusion", Sec. 3.2 and Fig. 1) embeds
``seconds_start`` and ``seconds_total`` with learned Fourier features (its ``NumberConditioner``), prepends the
two embeddings to the text encoder's tokens for cross-attention and adds them to the global conditioning. Here:

- the text encoder (:class:`WordTextEncoder`) is a small transformer over a word vocabulary, trained from
  scratch with the DiT (no download, no tokenizer file: the vocabulary is part of the model's config);
- ``context = [start; total; text tokens]`` with a mask that hides padding; the blocks are diffcore's MMDiT
  (joint attention over ``[context; audio tokens]``, Esser et al. 2024, which contains cross-attention from the
  audio tokens to the context), with rotary position embeddings over the latent time axis, so any length works;
- ``pooled = [start; total]`` goes into the adaLN conditioning vector with the diffusion time; with
  ``pooled_text`` (the default) also the mean of the caption's token states over its real words, as SD3 adds
  its pooled text embedding (Esser et al. 2024, Sec. 5.1), so a global attribute of the caption (the note, the
  instrument) modulates every block directly instead of only through attention, which a small DiT learns only
  after many more steps.

Contract: ``AudioDiT(x, t, tokens, seconds_start, seconds_total)`` with ``x`` ``(B, latent_dim, L)`` (``L`` a
multiple of ``patch_size``), ``t`` ``(B,)`` in [0, 1] (0 = data, 1 = noise), ``tokens`` ``(B, M)`` int64 (0 =
padding; all padding = no caption, the null condition of classifier-free guidance), ``seconds_*`` ``(B,)``
floats; returns the prediction ``(B, latent_dim, L)`` (what it is, velocity or v, is the pipeline's setting).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from diffcore.nn import MMDiT
from diffcore.nn.mmdit import MMDiTConfig
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

__all__ = [
    "AudioDiT",
    "AudioDiTConfig",
    "NumberEmbedder",
    "WordTextEncoder",
    "build_vocabulary",
    "caption_words",
]

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9#]+")


def caption_words(caption: str) -> list[str]:
    """Lower-cased words of a caption (letters, digits and ``#``; punctuation separates)."""
    return _WORD.findall(caption.lower())


def build_vocabulary(captions: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """``[<pad>, <unk>, sorted words of captions and extra]``."""
    words = {w for c in captions for w in caption_words(c)} | {w.lower() for w in extra}
    return [PAD, UNK, *sorted(words - {PAD, UNK})]


@dataclass
class AudioDiTConfig:
    """Hyper-parameters of :class:`AudioDiT` (see :class:`~diff_audio.config.AudioModelConfig` for the meaning
    of the shared names).

    Attributes:
        latent_dim: channels of the VAE latents.
        latent_length: latent frames of a training clip (a nominal size; any multiple of ``patch_size`` runs).
        vocabulary: the text encoder's words, ``<pad>`` first and ``<unk>`` second.
        pooled_text: add the caption's mean token state to the adaLN conditioning (see the module doc).
    """

    latent_dim: int = 32
    latent_length: int = 64
    width: int = 256
    depth: int = 6
    heads: int = 4
    patch_size: int = 1
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_max_length: int = 32
    max_seconds: float = 1.0
    vocabulary: list[str] = field(default_factory=lambda: [PAD, UNK])
    pooled_text: bool = True

    older_file_defaults: ClassVar[dict[str, object]] = {"pooled_text": False}
    """What folders saved before ``pooled_text`` existed were built with."""

    def __post_init__(self) -> None:
        self.vocabulary = list(self.vocabulary)
        if self.vocabulary[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary: must start with {PAD!r}, {UNK!r}, got {self.vocabulary[:2]}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds: expected > 0, got {self.max_seconds}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_heads: {self.text_heads} must divide text_width {self.text_width}")


class NumberEmbedder(nn.Module):
    """Stable Audio's number conditioner: ``value / max_value`` -> learned Fourier features (``sin``, ``cos`` of
    ``2 pi w v`` with learned ``w``, plus ``v`` itself) -> ``Linear`` -> ``(B, dim)``."""

    def __init__(self, dim: int, max_value: float, features: int = 128) -> None:
        super().__init__()
        self.max_value = float(max_value)
        self.weights = nn.Parameter(torch.randn(features // 2))
        self.proj = nn.Linear(features + 1, dim)

    def forward(self, value: Tensor) -> Tensor:
        """``value: (B,)`` (seconds) -> ``(B, dim)``."""
        v = (value.float() / self.max_value)[:, None]
        angle = 2 * math.pi * v * self.weights[None]
        return self.proj(torch.cat([v, angle.sin(), angle.cos()], dim=-1))


class WordTextEncoder(nn.Module):
    """Token ids ``(B, M)`` -> hidden states ``(B, M, width)``: word embeddings + learned positions through a
    pre-norm transformer encoder. Padding is an ordinary token here (the DiT's attention mask hides it), so a
    caption of padding only still gives finite states."""

    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(1, max_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids ``(B, M)`` -> hidden states ``(B, M, width)``."""
        h = self.embed(tokens) + self.position[:, : tokens.shape[1]]
        return self.norm(self.encoder(h))


class AudioDiT(PretrainedModel):
    """Timing- and text-conditioned latent DiT (see the module docstring)."""

    config_class = AudioDiTConfig
    config: AudioDiTConfig

    def __init__(self, config: AudioDiTConfig) -> None:
        super().__init__(config)
        c = config
        self.text_encoder = WordTextEncoder(
            len(c.vocabulary), c.text_width, c.text_layers, c.text_heads, c.text_max_length
        )
        self.start_embedder = NumberEmbedder(c.text_width, c.max_seconds)
        self.total_embedder = NumberEmbedder(c.text_width, c.max_seconds)
        mm = MMDiTConfig(
            input_size=(c.latent_length,), patch_size=c.patch_size, in_channels=c.latent_dim, hidden_size=c.width,
            depth=c.depth, num_heads=c.heads, pooled_dim=(3 if c.pooled_text else 2) * c.text_width, context_dim=c.text_width, pos_embed="rope",
            qk_norm=True,
        )  # fmt: skip
        self.backbone = MMDiT(mm)
        self._index = {w: i for i, w in enumerate(c.vocabulary)}

    def tokenize(self, captions: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """Captions -> ids ``(B, text_max_length)`` (0-padded; unknown words -> ``<unk>``). A caption longer than
        ``text_max_length`` words is refused (nothing is cut)."""
        if isinstance(captions, str):
            raise TypeError("captions: expected a list of strings, got one string")
        n = self.config.text_max_length
        ids = torch.zeros(len(captions), n, dtype=torch.long)
        for row, caption in enumerate(captions):
            words = caption_words(caption)
            if len(words) > n:
                raise ValueError(
                    f"caption: {caption[:60]!r} has {len(words)} words, more than text_max_length={n} "
                    "(raise model.text_max_length)"
                )
            ids[row, : len(words)] = torch.tensor([self._index.get(w, 1) for w in words], dtype=torch.long)
        return ids.to(device if device is not None else self.backbone.t_embedder.mlp[0].weight.device)

    def forward(
        self, x: Tensor, t: Tensor, tokens: Tensor, seconds_start: Tensor, seconds_total: Tensor
    ) -> Tensor:
        """The prediction for latents ``x: (B, C, L)`` at ``t: (B,)`` given the caption's token ids
        ``tokens: (B, M)`` and the clip's timing ``seconds_start``, ``seconds_total`` (each ``(B,)``); same
        shape as ``x``."""
        b = x.shape[0]
        for name, value in (("seconds_start", seconds_start), ("seconds_total", seconds_total)):
            if value.shape != (b,):
                raise ValueError(f"{name}: expected shape ({b},), got {tuple(value.shape)}")
        if tokens.ndim != 2 or tokens.shape[0] != b:
            raise ValueError(f"tokens: expected ({b}, M) token ids, got {tuple(tokens.shape)}")
        text = self.text_encoder(tokens)
        start = self.start_embedder(seconds_start).to(text.dtype)
        total = self.total_embedder(seconds_total).to(text.dtype)
        context = torch.cat([start[:, None], total[:, None], text], dim=1)
        words = tokens != 0
        mask = torch.cat([tokens.new_ones(b, 2, dtype=torch.bool), words], dim=1)
        pooled = [start, total]
        if self.config.pooled_text:  # mean over real words; a caption of padding only (CFG's null) pools to 0
            w = words[..., None].to(text.dtype)
            pooled.append((text * w).sum(1) / w.sum(1).clamp_min(1.0))
        return self.backbone(x, t, context=context, context_mask=mask, pooled=torch.cat(pooled, dim=-1))
