"""The denoising networks of diff-image: diffcore backbones configured for images, and text conditioning.

Every network meets diffcore's contract ``net(x_t, t, **cond) -> tensor shaped like x_t`` with ``x_t``
``(B, C, H, W)`` (pixels in ``[-1, 1]`` or scaled latents) and ``t`` ``(B,)`` in ``[0, 1]`` (0 = data).

* :func:`build_backbone` — a :class:`~diffcore.nn.DiT`, :class:`~diffcore.nn.UNet` or :class:`~diffcore.nn.MMDiT`
  from an :class:`~diff_image.config.ImageModelConfig`; class conditioning is ``y=`` with the null class
  ``num_classes`` for classifier-free guidance.
* :class:`TextEncoder` — a ``transformers`` text tower and its tokenizer: a small CLIP text transformer
  with a word-level vocabulary trained from scratch (the default), or any local pretrained CLIP / T5 folder.
* :class:`TextConditionedModel` — backbone + text encoder with the contract ``net(x, t, input_ids=...)``:
  token ids are tensors, so classifier-free guidance batches the empty prompt like any other condition.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffcore.io import read_json, write_json
from diffcore.nn import DiT, DiTConfig, MMDiT, MMDiTConfig, UNet, UNetConfig
from diffcore.pretrained import PretrainedModel, load_pretrained
from torch import Tensor, nn

from diff_image.config import ImageModelConfig

__all__ = ["TextConditionedModel", "TextEncoder", "build_backbone", "caption_vocabulary", "resolve_model"]

TEXT_CONDITIONED_FILE = "text_conditioned.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def read_folder_meta(folder: Path, name: str, expected: str) -> dict[str, Any]:
    """The JSON file ``folder / name`` of a saved composite model; a clear error naming what was expected."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"directory: {folder} has no {name} (expected {expected})")
    return read_json(path, expected)


def resolve_model(config: ImageModelConfig, conditioning: str) -> ImageModelConfig:
    """``config`` with ``conditioning`` (``none``, ``class`` or ``text``) in place of ``auto`` and its ``auto``
    backbone made concrete (``mmdit`` for text, else ``dit``); an explicit setting that contradicts
    ``conditioning`` is an error naming it."""
    import dataclasses

    if conditioning not in ("none", "class", "text"):
        raise ValueError(f"conditioning: expected 'none', 'class' or 'text', got {conditioning!r}")
    if config.conditioning not in ("auto", conditioning):
        raise ValueError(f"conditioning: expected {conditioning!r} or 'auto', got {config.conditioning!r}")
    backbone = config.backbone
    if backbone == "auto":
        backbone = "mmdit" if conditioning == "text" else "dit"
    elif backbone == "dit" and conditioning == "text":
        raise ValueError(
            "backbone: 'dit' has no text input, and the data's conditioning is 'text'; use --backbone mmdit "
            "(or unet, or auto), or --conditioning none"
        )
    elif backbone == "mmdit" and conditioning != "text":
        raise ValueError(
            f"backbone: 'mmdit' takes text only, and the conditioning is {conditioning!r}; use --backbone "
            "dit (or unet, or auto), or captioned data"
        )
    return dataclasses.replace(config, backbone=backbone, conditioning=conditioning)


def build_backbone(
    config: ImageModelConfig,
    image_shape: tuple[int, int, int],
    num_classes: int = 0,
    context_dim: int = 0,
    pooled_dim: int = 0,
) -> PretrainedModel:
    """The backbone for inputs ``(B, *image_shape)``.

    Args:
        config: which backbone and how large; ``auto`` conditioning follows the arguments (``class`` with
            ``num_classes``, ``text`` with ``context_dim``, else ``none``), an ``auto`` backbone is
            :func:`resolve_model`'s.
        image_shape: ``(C, H, W)`` of the diffused tensor (pixels, or latents for latent diffusion).
        num_classes: classes for ``conditioning="class"`` (the null class is index ``num_classes``).
        context_dim, pooled_dim: text feature widths for ``conditioning="text"``.
    """
    c, h, w = image_shape
    if config.conditioning == "auto":  # from the arguments: classes, text features or neither
        if num_classes and context_dim:
            raise ValueError(
                "conditioning: 'auto' with both num_classes and context_dim is ambiguous; set 'class' or 'text'"
            )
        config = resolve_model(config, "class" if num_classes else "text" if context_dim else "none")
    elif config.backbone == "auto":
        config = resolve_model(config, config.conditioning)
    if config.conditioning == "class" and num_classes < 2:
        raise ValueError(f"num_classes: class conditioning needs >= 2 classes, got {num_classes}")
    if config.conditioning == "text" and context_dim < 1:
        raise ValueError(f"context_dim: text conditioning needs the text width, got {context_dim}")
    classes = num_classes if config.conditioning == "class" else 0
    if config.backbone == "dit":
        if config.conditioning == "text":
            raise ValueError("backbone: 'dit' has no text input; use 'mmdit' or 'unet' for text conditioning")
        return DiT(
            DiTConfig(
                input_size=(h, w),
                patch_size=config.patch_size,
                in_channels=c,
                hidden_size=config.width,
                depth=config.depth,
                num_heads=config.heads,
                num_classes=classes,
            )
        )
    if config.backbone == "mmdit":
        return MMDiT(
            MMDiTConfig(
                input_size=(h, w),
                patch_size=config.patch_size,
                in_channels=c,
                hidden_size=config.width,
                depth=config.depth,
                num_heads=config.heads,
                pooled_dim=pooled_dim,
                context_dim=context_dim,
                qk_norm=True,
            )
        )
    groups = 8 if config.width % 8 == 0 else 1
    return UNet(
        UNetConfig(
            in_channels=c,
            model_channels=config.width,
            channel_mult=config.channel_mult,
            num_res_blocks=config.depth,
            attention_levels=config.attention_levels,
            num_heads=config.heads,
            num_groups=groups,
            num_classes=classes or None,
            context_dim=context_dim if config.conditioning == "text" else None,
            pooled_dim=(pooled_dim or None) if config.conditioning == "text" else None,
        )
    )


def caption_vocabulary(captions: Iterable[str]) -> list[str]:
    """Sorted word vocabulary of ``captions`` (split as the word-level tokenizer splits: words and punctuation)."""
    from tokenizers.pre_tokenizers import Whitespace

    pre = Whitespace()
    words = {w for cap in captions for w, _ in pre.pre_tokenize_str(cap)}
    return sorted(words)


def _word_tokenizer(words: Sequence[str]) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )


class TextEncoder(nn.Module):
    """A ``transformers`` text tower with its tokenizer: prompts -> token ids -> (context, mask, pooled).

    ``context`` ``(B, L, width)`` is the last hidden state, ``mask`` ``(B, L)`` bool (True = real token) and
    ``pooled`` ``(B, width)`` the CLIP EOS feature (CLIP, Radford et al. 2021) or the masked mean of the
    tokens (T5, which has no pooled output).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int) -> None:
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length: expected >= 2 (BOS and EOS), got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.kind = "t5" if getattr(model.config, "model_type", "") == "t5" else "clip"

    @classmethod
    def from_scratch(
        cls, words: Sequence[str], width: int = 128, layers: int = 2, heads: int = 4, max_length: int = 32
    ) -> TextEncoder:
        """A randomly initialised CLIP text transformer over a word-level vocabulary (``words``)."""
        from transformers import CLIPTextConfig, CLIPTextModel

        tokenizer = _word_tokenizer(words)
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=max_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return cls(CLIPTextModel(config), tokenizer, max_length)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], max_length: int | None = None, freeze: bool = True
    ) -> TextEncoder:
        """Load a CLIP text model or a T5 encoder and its tokenizer from a LOCAL folder (never downloaded)."""
        from transformers import AutoConfig, AutoTokenizer, CLIPTextModel, T5EncoderModel

        folder = Path(directory)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"directory: {folder} has no config.json (expected a local text model)")
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        if config.model_type == "t5":
            model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True)
        elif config.model_type in ("clip", "clip_text_model"):
            model = CLIPTextModel.from_pretrained(str(folder), local_files_only=True)
        else:
            raise ValueError(f"directory: {folder} holds a {config.model_type!r} model; expected CLIP or T5")
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        length = max_length or getattr(model.config, "max_position_embeddings", 77)
        encoder = cls(model, tokenizer, int(length))
        return encoder.requires_grad_(not freeze)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the model (``config.json`` + safetensors) and the tokenizer into ``directory``."""
        out = Path(directory)
        self.model.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))
        return out

    @property
    def width(self) -> int:
        """Feature width of ``context`` and ``pooled``."""
        cfg = self.model.config
        return int(cfg.d_model if self.kind == "t5" else cfg.hidden_size)

    def tokenize(self, prompts: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """Token ids ``(B, max_length)`` (BOS, words, EOS, padding), on ``device``."""
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError("prompts: expected a non-empty list of strings")
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )["input_ids"]
        return ids.to(device) if device is not None else ids

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``input_ids`` ``(B, L)`` -> ``context`` ``(B, L, width)``, ``mask`` ``(B, L)``, ``pooled`` ``(B, width)``."""
        mask = input_ids != self.tokenizer.pad_token_id
        out = self.model(input_ids=input_ids, attention_mask=mask.long())
        hidden = out.last_hidden_state
        if self.kind == "t5":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            pooled = out.pooler_output
        return hidden, mask, pooled


class TextConditionedModel(nn.Module):
    """``net(x, t, input_ids=ids, **rest)``: encodes the ids and calls the backbone with text features.

    MMDiT gets ``context``, ``context_mask`` and ``pooled``; the U-Net cross-attends to ``context`` and adds
    ``pooled`` to its time embedding. ``train_text_encoder=False`` freezes a pretrained encoder.
    """

    def __init__(
        self, backbone: nn.Module, text_encoder: TextEncoder, train_text_encoder: bool = True
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder.requires_grad_(train_text_encoder)
        self.train_text_encoder = train_text_encoder

    @property
    def supports_save_pretrained(self) -> bool:
        """Whether :meth:`save_pretrained` can write this model: the backbone is a ``PretrainedModel`` (a
        ControlNet-wrapped backbone is not; the Trainer then saves the bare state dict instead)."""
        return isinstance(self.backbone, PretrainedModel)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model/`` (the backbone's ``save_pretrained``), ``text_encoder/`` and ``text_conditioned.json``."""
        out = Path(directory)
        if not isinstance(self.backbone, PretrainedModel):
            raise TypeError(
                f"backbone: expected a PretrainedModel to save, got {type(self.backbone).__name__}"
            )
        self.backbone.save_pretrained(out / "model")
        self.text_encoder.save_pretrained(out / "text_encoder")
        write_json({"train_text_encoder": self.train_text_encoder}, out / TEXT_CONDITIONED_FILE)
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> TextConditionedModel:
        """Load a folder written by :meth:`save_pretrained`."""
        folder = Path(directory)
        meta = read_folder_meta(folder, TEXT_CONDITIONED_FILE, "a saved TextConditionedModel")
        backbone = load_pretrained(folder / "model", device=device)
        text_encoder = TextEncoder.from_pretrained(folder / "text_encoder").to(device)
        return cls(backbone, text_encoder, train_text_encoder=bool(meta["train_text_encoder"]))

    def forward(self, x: Tensor, t: Tensor, input_ids: Tensor | None = None, **rest: Any) -> Tensor:
        """``x`` ``(B, C, H, W)``, ``t`` ``(B,)`` in [0, 1], ``input_ids`` ``(B, L)`` -> ``(B, C, H, W)``."""
        if input_ids is None:
            input_ids = self.text_encoder.tokenize([""] * x.shape[0], device=x.device)
        if input_ids.shape[0] != x.shape[0]:
            raise ValueError(f"input_ids: expected batch {x.shape[0]}, got {tuple(input_ids.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_text_encoder):
            context, mask, pooled = self.text_encoder(input_ids)
        dtype = x.dtype if x.dtype != torch.float64 else context.dtype
        return self.backbone(
            x, t, context=context.to(dtype), context_mask=mask, pooled=pooled.to(dtype), **rest
        )
