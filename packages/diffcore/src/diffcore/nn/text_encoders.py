"""Frozen text encoders for conditioning, loaded only from LOCAL folders (never downloaded).

A folder holds a ``transformers`` model (``config.json`` + weights) and, unless another folder is
named, its tokenizer (``tokenizer.json`` ...). Each encoder returns :class:`TextEmbeddings`:
``hidden_states`` ``(B, L, D)``, ``pooled`` ``(B, P)`` or None, and ``mask`` ``(B, L)`` bool
(True = a real token). :class:`MultiTextEncoder` combines them the SD3 way (Esser et al. 2024,
Sec. 5.2): pooled = concatenation of the CLIP pooled outputs, context = CLIP hidden states
(concatenated over channels, zero-padded to the T5 width) followed by the T5 tokens along the
sequence axis. Requires the ``text`` extra (``transformers``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PathLike = str | os.PathLike[str]


class TextEmbeddings(NamedTuple):
    """Encoder output: ``hidden_states`` ``(B, L, D)``, ``pooled`` ``(B, P)`` or None, ``mask`` ``(B, L)`` bool."""

    hidden_states: Tensor
    pooled: Tensor | None
    mask: Tensor


def _local_folder(path: PathLike, name: str, needs_config: bool) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: {folder} is not a local folder")
    if needs_config and not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{name}: {folder} has no config.json (expected a local transformers model folder)"
        )
    return folder


def _load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


class _TokenizedEncoder(nn.Module):
    """Shared tokenisation: pad to ``max_length``, truncate, move ids to the model's device."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length: expected >= 1, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``prompts`` -> ``(input_ids, mask)`` each ``(B, max_length)``, on the model's device."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts: expected a non-empty list of strings")
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device).bool()


class CLIPTextEncoder(_TokenizedEncoder):
    """CLIP text tower (Radford et al. 2021) from a local folder.

    ``hidden_layer``: which hidden state is the sequence output; ``-1`` is the final (layer-normed)
    output, ``-2`` the penultimate layer as SD3 and SDXL use. ``pooled`` is the projected EOS feature
    (``text_embeds``) for a ``CLIPTextModelWithProjection`` checkpoint, else the un-projected
    ``pooler_output``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 77,
        hidden_layer: int = -1,
    ) -> None:
        super().__init__(model, tokenizer, max_length)
        layers = model.config.num_hidden_layers
        if not -(layers + 1) <= hidden_layer <= layers:
            raise ValueError(
                f"hidden_layer: expected an index into {layers + 1} hidden states, got {hidden_layer}"
            )
        self.hidden_layer = hidden_layer

    @classmethod
    def from_pretrained(
        cls,
        path: PathLike,
        tokenizer_path: PathLike | None = None,
        projection: bool | None = None,
        max_length: int | None = None,
        hidden_layer: int = -1,
        dtype: torch.dtype | None = None,
        freeze: bool = True,
    ) -> CLIPTextEncoder:
        """Load from ``path`` (``local_files_only``). ``projection=None`` follows the saved architecture."""
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        folder = _local_folder(path, "path", needs_config=True)
        config = CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
        if projection is None:
            projection = "CLIPTextModelWithProjection" in (config.architectures or [])
        model_cls = CLIPTextModelWithProjection if projection else CLIPTextModel
        model = model_cls.from_pretrained(str(folder), local_files_only=True)
        tokenizer = _load_tokenizer(
            _local_folder(tokenizer_path or folder, "tokenizer_path", needs_config=False)
        )
        encoder = cls(model, tokenizer, max_length or config.max_position_embeddings, hidden_layer)
        return encoder.to(dtype=dtype).requires_grad_(not freeze).train(not freeze)

    @property
    def width(self) -> int:
        """Hidden width ``D`` of the sequence output."""
        return self.model.config.hidden_size

    @property
    def pooled_width(self) -> int:
        """Width ``P`` of the pooled output (the projection width when projected)."""
        return getattr(self.model.config, "projection_dim", self.width) if self._projected else self.width

    @property
    def _projected(self) -> bool:
        return hasattr(self.model, "text_projection")

    def forward(self, prompts: Sequence[str]) -> TextEmbeddings:
        """Encode ``prompts`` -> ``(B, max_length, width)``, ``(B, pooled_width)``, ``(B, max_length)``."""
        ids, mask = self.tokenize(prompts)
        out = self.model(input_ids=ids, output_hidden_states=self.hidden_layer != -1)
        hidden = out.last_hidden_state if self.hidden_layer == -1 else out.hidden_states[self.hidden_layer]
        pooled = out.text_embeds if self._projected else out.pooler_output
        return TextEmbeddings(hidden, pooled, mask)


class T5TextEncoder(_TokenizedEncoder):
    """T5 encoder (Raffel et al. 2020) from a local folder: token embeddings, no pooled output.

    ``use_attention_mask``: mask padding inside the encoder (padding then cannot change the real
    tokens' embeddings); SD3's reference pipeline encodes without it.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 256,
        use_attention_mask: bool = True,
    ) -> None:
        super().__init__(model, tokenizer, max_length)
        self.use_attention_mask = use_attention_mask

    @classmethod
    def from_pretrained(
        cls,
        path: PathLike,
        tokenizer_path: PathLike | None = None,
        max_length: int = 256,
        use_attention_mask: bool = True,
        dtype: torch.dtype | None = None,
        freeze: bool = True,
    ) -> T5TextEncoder:
        """Load a ``T5EncoderModel`` and its tokenizer from ``path`` (``local_files_only``)."""
        from transformers import T5EncoderModel

        folder = _local_folder(path, "path", needs_config=True)
        model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True)
        tokenizer = _load_tokenizer(
            _local_folder(tokenizer_path or folder, "tokenizer_path", needs_config=False)
        )
        encoder = cls(model, tokenizer, max_length, use_attention_mask)
        return encoder.to(dtype=dtype).requires_grad_(not freeze).train(not freeze)

    @property
    def width(self) -> int:
        """Hidden width ``D`` (T5's ``d_model``)."""
        return self.model.config.d_model

    def forward(self, prompts: Sequence[str]) -> TextEmbeddings:
        """Encode ``prompts`` -> ``(B, max_length, width)``, None, ``(B, max_length)``."""
        ids, mask = self.tokenize(prompts)
        out = self.model(input_ids=ids, attention_mask=mask.long() if self.use_attention_mask else None)
        return TextEmbeddings(out.last_hidden_state, None, mask)


class MultiTextEncoder(nn.Module):
    """SD3's text conditioning from CLIP-style pooled encoders and an optional T5-style sequence encoder.

    ``encode`` returns :class:`TextEmbeddings` with
    - ``pooled``: ``(B, sum of CLIP pooled widths)`` (SD3: 768 + 1280 = 2048);
    - ``hidden_states`` (the MMDiT ``context``): ``(B, L_clip + L_t5, context_dim)``, the CLIP hidden
      states concatenated over channels and zero-padded to ``context_dim``, then the T5 tokens;
      with ``clip_in_context=False`` the T5 tokens alone; without T5 (none given or
      ``use_t5=False``), the CLIP part alone;
    - ``mask``: ``(B, L)``; CLIP tokens are all True (SD3 attends to CLIP padding as trained), T5
      tokens follow the tokenizer's mask.
    """

    def __init__(
        self,
        clip: Sequence[CLIPTextEncoder],
        t5: T5TextEncoder | None = None,
        context_dim: int | None = None,
        clip_in_context: bool = True,
    ) -> None:
        super().__init__()
        if not clip:
            raise ValueError("clip: expected at least one CLIP-style encoder for the pooled vector")
        if len({c.max_length for c in clip}) != 1:
            raise ValueError(f"clip: encoders must share max_length, got {[c.max_length for c in clip]}")
        if not clip_in_context and t5 is None:
            raise ValueError("clip_in_context=False needs a t5 encoder (the context would be empty)")
        self.clip = nn.ModuleList(clip)
        self.t5 = t5
        self.clip_in_context = clip_in_context
        clip_width = sum(c.width for c in clip)
        self.context_dim = context_dim or (t5.width if t5 is not None else clip_width)
        if self.context_dim < clip_width or (t5 is not None and t5.width != self.context_dim):
            raise ValueError(
                f"context_dim: {self.context_dim} must hold the CLIP widths ({clip_width}) and equal the T5 "
                f"width ({t5.width if t5 is not None else 'no T5'})"
            )

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled vector (MMDiT ``pooled_dim``)."""
        return sum(c.pooled_width for c in self.clip)

    def forward(self, prompts: Sequence[str], use_t5: bool = True) -> TextEmbeddings:
        """Encode ``prompts``; ``use_t5=False`` drops the T5 tokens (SD3 inference without T5)."""
        outs = [c(prompts) for c in self.clip]
        pooled = torch.cat([o.pooled for o in outs], dim=-1)
        parts: list[tuple[Tensor, Tensor]] = []
        if self.clip_in_context or self.t5 is None or not use_t5:
            hidden = torch.cat([o.hidden_states for o in outs], dim=-1)
            hidden = nn.functional.pad(hidden, (0, self.context_dim - hidden.shape[-1]))
            parts.append((hidden, torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)))
        if self.t5 is not None and use_t5:
            t5_out = self.t5(prompts)
            parts.append((t5_out.hidden_states.to(pooled.dtype), t5_out.mask))
        context = torch.cat([p[0].to(pooled.dtype) for p in parts], dim=1)
        return TextEmbeddings(context, pooled, torch.cat([p[1] for p in parts], dim=1))
