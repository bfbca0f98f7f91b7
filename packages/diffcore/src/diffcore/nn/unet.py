"""ADM / Stable-Diffusion U-Net for 1D and 2D signals.

The network of Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs", ADM) with the spatial
transformer blocks of Rombach et al. 2022 (latent diffusion / Stable Diffusion):

* ResBlocks: GroupNorm -> SiLU -> conv, the time embedding enters through a linear map as a
  scale and shift of the second GroupNorm (ADM's ``use_scale_shift_norm``, Sec. 3 / App. A),
  the last conv zero-initialised so every block starts as the identity.
* Attention blocks at chosen levels: GroupNorm -> linear in -> ``transformer_depth`` blocks of
  (self-attention, cross-attention to ``context`` with an optional padding mask, GEGLU MLP) ->
  zero-initialised linear out, all attention through ``F.scaled_dot_product_attention``.
* Class conditioning with an extra *null* class at index ``num_classes`` (the unconditional
  branch of classifier-free guidance), text conditioning through cross-attention and an
  optional pooled text vector added to the time embedding (as SDXL does).
* ``control=(skip_residuals, mid_residual)`` adds ControlNet residuals (Zhang et al. 2023,
  Eq. 4) to every skip connection and to the middle block output.

The encoder half (embeddings, input blocks, middle block) is its own module,
:class:`UNetEncoder`, so a ControlNet can copy exactly that half.

Network contract: ``net(x, t, **cond)`` returns a tensor shaped like ``x``; ``x`` is
``(B, C, L)`` for ``dims=1`` or ``(B, C, H, W)`` for ``dims=2``; ``t`` has shape ``(B,)`` in
[0, 1] with 0 = data and 1 = noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffcore.nn.attention import Attention, CrossAttention
from diffcore.nn.embeddings import LabelEmbedder, TimestepEmbedder
from diffcore.pretrained import PretrainedModel

ControlResiduals = tuple[Sequence[Tensor], Tensor]
"""ControlNet output: one residual per skip connection (encoder order) and one for the middle block."""


@dataclass
class UNetConfig:
    """Shape of a :class:`UNet`.

    Attributes:
        in_channels: channels ``C`` of ``x``.
        out_channels: channels of the output; ``None`` means ``in_channels``.
        dims: 1 for ``(B, C, L)`` signals (audio, time series), 2 for ``(B, C, H, W)`` images.
        model_channels: channels of the first level; level ``i`` has ``model_channels * channel_mult[i]``.
        channel_mult: one multiplier per resolution level; there are ``len(channel_mult) - 1`` downsamplings.
        num_res_blocks: ResBlocks per level in the encoder (the decoder has one more).
        attention_levels: level indices (0 = full resolution) that get attention blocks.
        num_heads: attention heads (used when ``head_dim`` is ``None``).
        head_dim: channels per head; when set, heads = channels // head_dim (Stable Diffusion 2 style).
        transformer_depth: transformer blocks per attention block, one int for all levels or one per
            level (SDXL: ``(0, 2, 10)``; levels not in ``attention_levels`` ignore theirs).
        mid_transformer_depth: transformer blocks in the middle attention block; ``None``: the last level's.
        mid_attention: whether the middle block has an attention block between its two ResBlocks.
        dropout: dropout rate inside ResBlocks.
        num_groups: GroupNorm groups; must divide ``model_channels``.
        use_scale_shift_norm: time embedding as scale and shift of the norm (ADM) instead of an added bias.
        num_classes: number of classes for class conditioning; index ``num_classes`` is the null class.
        context_dim: feature size ``Dc`` of the cross-attention context ``(B, L, Dc)``;
            ``None`` = no cross-attention.
        pooled_dim: size of a pooled conditioning vector ``(B, Dp)`` added to the time embedding;
            ``None`` = none.
        gradient_checkpointing: recompute block activations in the backward pass to save memory.
    """

    in_channels: int = 3
    out_channels: int | None = None
    dims: int = 2
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)
    num_heads: int = 4
    head_dim: int | None = None
    transformer_depth: int | tuple[int, ...] = 1
    mid_transformer_depth: int | None = None
    mid_attention: bool = True
    dropout: float = 0.0
    num_groups: int = 32
    use_scale_shift_norm: bool = True
    num_classes: int | None = None
    context_dim: int | None = None
    pooled_dim: int | None = None
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.attention_levels = tuple(self.attention_levels)
        if self.dims not in (1, 2):
            raise ValueError(f"dims: expected 1 or 2, got {self.dims}")
        for name in (
            "in_channels",
            "model_channels",
            "num_res_blocks",
            "num_heads",
            "num_groups",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        self._check_depths()
        if self.out_channels is not None and self.out_channels < 1:
            raise ValueError(f"out_channels: expected a positive integer or None, got {self.out_channels}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(
                f"channel_mult: expected a non-empty tuple of positive ints, got {self.channel_mult}"
            )
        bad_levels = [lv for lv in self.attention_levels if not 0 <= lv < len(self.channel_mult)]
        if bad_levels:
            raise ValueError(f"attention_levels: {bad_levels} outside 0..{len(self.channel_mult) - 1}")
        if self.model_channels % self.num_groups:
            raise ValueError(
                f"num_groups: {self.num_groups} must divide model_channels={self.model_channels} (GroupNorm)"
            )
        for mult in self.channel_mult:
            heads_for_channels(self, self.model_channels * mult)
        for name in ("num_classes", "context_dim", "pooled_dim", "head_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: expected a positive integer or None, got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {self.dropout}")

    def _check_depths(self) -> None:
        if isinstance(self.transformer_depth, (list, tuple)):
            self.transformer_depth = tuple(int(d) for d in self.transformer_depth)
            if len(self.transformer_depth) != len(self.channel_mult):
                raise ValueError(
                    f"transformer_depth: expected one depth per level ({len(self.channel_mult)}), "
                    f"got {self.transformer_depth}"
                )
        for level in self.attention_levels:
            if self.depth_at(level) < 1:
                raise ValueError(
                    f"transformer_depth: level {level} has attention but depth {self.depth_at(level)}"
                )
        if self.mid_attention and self.mid_depth < 1:
            raise ValueError(f"mid_transformer_depth: expected >= 1 with mid_attention, got {self.mid_depth}")

    def depth_at(self, level: int) -> int:
        """Transformer blocks per attention block at resolution level ``level``."""
        if isinstance(self.transformer_depth, int):
            return self.transformer_depth
        return self.transformer_depth[level]

    @property
    def mid_depth(self) -> int:
        """Transformer blocks in the middle attention block."""
        if self.mid_transformer_depth is not None:
            return self.mid_transformer_depth
        return self.depth_at(len(self.channel_mult) - 1)

    @property
    def resolved_out_channels(self) -> int:
        """Output channels (``out_channels`` or, when ``None``, ``in_channels``)."""
        return self.out_channels if self.out_channels is not None else self.in_channels

    @property
    def time_embed_dim(self) -> int:
        """Width of the time (+ class, + pooled) embedding: ``4 * model_channels`` as in ADM."""
        return 4 * self.model_channels

    @property
    def downsample_factor(self) -> int:
        """Spatial sizes of ``x`` must be divisible by this (``2 ** (len(channel_mult) - 1)``)."""
        return 2 ** (len(self.channel_mult) - 1)


def heads_for_channels(config: UNetConfig, channels: int) -> int:
    """Number of attention heads for a block of ``channels`` channels (checks divisibility)."""
    if config.head_dim is not None:
        if channels % config.head_dim:
            raise ValueError(
                f"head_dim: {config.head_dim} must divide every level's channels, not {channels}"
            )
        return channels // config.head_dim
    if channels % config.num_heads:
        raise ValueError(f"num_heads: {config.num_heads} must divide every level's channels, not {channels}")
    return config.num_heads


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it (zero-initialised output layers)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def conv_nd(dims: int, in_channels: int, out_channels: int, kernel_size: int, **kwargs: int) -> nn.Module:
    """``nn.Conv1d`` for ``dims=1``, ``nn.Conv2d`` for ``dims=2``."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    return conv(in_channels, out_channels, kernel_size, **kwargs)


def _broadcast_to_spatial(v: Tensor, dims: int) -> Tensor:
    """``(B, C)`` -> ``(B, C, 1)`` or ``(B, C, 1, 1)``."""
    return v.reshape(*v.shape, *([1] * dims))


class ResBlock(nn.Module):
    """ADM residual block: ``skip(x) + conv(act(norm(h) * (1 + scale) + shift))``, ``h = conv(act(norm(x)))``.

    ``x: (B, C_in, *S)``, ``emb: (B, E)`` -> ``(B, C_out, *S)``. The last conv is zero-initialised.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dims: int,
        num_groups: int,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            nn.GroupNorm(num_groups, in_channels),
            nn.SiLU(),
            conv_nd(dims, in_channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_norm = nn.GroupNorm(num_groups, out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(conv_nd(dims, out_channels, out_channels, 3, padding=1)),
        )
        self.skip = (
            nn.Identity() if in_channels == out_channels else conv_nd(dims, in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Residual block on ``x: (B, C, *spatial)`` with the time (and class) embedding ``emb: (B, E)``,
        added after the first convolution or, with ``use_scale_shift_norm``, applied as
        ``norm(h) * (1 + scale) + shift``."""
        h = self.in_layers(x)
        e = _broadcast_to_spatial(self.emb_layers(emb).to(h.dtype), self.dims)
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)


class FeedForward(nn.Module):
    """GEGLU MLP (Shazeer 2020) ``(B, N, D) -> (B, N, D)`` with hidden width ``mult * D``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        """GEGLU feed-forward on tokens ``x: (B, N, D)``: ``proj_out(h * gelu(gate))``."""
        h, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(h * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention (if ``context_dim`` is set), GEGLU MLP. ``(B, N, D)``.

    With ``context=None`` the cross-attention is skipped (it then contributes nothing).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, qkv_bias=False)
        self.norm2: nn.Module | None = None
        self.attn2: CrossAttention | None = None
        if context_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = CrossAttention(dim, context_dim, heads, qkv_bias=False)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """Self-attention, cross-attention to ``context: (B, M, D_ctx)`` (keys where ``context_mask`` is False
        ignored; skipped when ``context`` is None) and the feed-forward, each pre-normed and residual, on
        ``x: (B, N, D)``."""
        x = x + self.attn1(self.norm1(x))
        if self.attn2 is not None and self.norm2 is not None and context is not None:
            x = x + masked_cross_attention(self.attn2, self.norm2(x), context, context_mask)
        return x + self.ff(self.norm3(x))


def masked_cross_attention(
    attn: CrossAttention, x: Tensor, context: Tensor, context_mask: Tensor | None
) -> Tensor:
    """Cross-attention where a batch element whose context is all padding gets a zero output.

    ``x: (B, N, D)``, ``context: (B, L, Dc)``, ``context_mask: (B, L)`` bool (True = real token).
    Such an element would softmax over only ``-inf`` (NaN); it attends anywhere and is zeroed after,
    so an empty prompt behaves exactly like ``context=None``.
    """
    if context_mask is None:
        return attn(x, context)
    empty = ~context_mask.any(dim=1)  # (B,)
    out = attn(x, context, context_mask | empty[:, None])
    return out.masked_fill(empty[:, None, None], 0.0)


class SpatialTransformer(nn.Module):
    """Attention over the positions of a feature map (Rombach et al. 2022, Fig. 3).

    ``x: (B, C, *S)`` -> GroupNorm -> tokens ``(B, prod(S), C)`` -> linear -> transformer blocks ->
    zero-initialised linear -> back to ``(B, C, *S)`` -> plus ``x``.
    """

    def __init__(
        self, channels: int, heads: int, depth: int, context_dim: int | None, num_groups: int
    ) -> None:
        super().__init__()
        # eps 1e-6: latent diffusion's Normalize() of its SpatialTransformer (the ResBlocks keep torch's 1e-5)
        self.norm = nn.GroupNorm(num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.blocks = nn.ModuleList(TransformerBlock(channels, heads, context_dim) for _ in range(depth))
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """The transformer blocks on the flattened positions of ``x: (B, C, *spatial)``, with a residual
        around them; same shape out."""
        b, c, *spatial = x.shape
        h = self.proj_in(self.norm(x).reshape(b, c, -1).transpose(1, 2))
        for block in self.blocks:
            h = block(h, context, context_mask)
        h = self.proj_out(h).transpose(1, 2).reshape(b, c, *spatial)
        return x + h


class Downsample(nn.Module):
    """Stride-2 3-wide convolution: ``(B, C, *S) -> (B, C, *S/2)``."""

    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Halve each spatial size of ``x: (B, C, *spatial)`` with a strided convolution."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling then a 3-wide convolution: ``(B, C, *S) -> (B, C, *2S)``."""

    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Double each spatial size of ``x: (B, C, *spatial)`` (nearest neighbour), then a convolution."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetBlock(nn.Module):
    """A sequence of layers; routes the time embedding to ResBlocks and the context to attention blocks."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, h: Tensor, emb: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None
    ) -> Tensor:
        """Run the block's layers in order: residual blocks take ``emb``, spatial transformers ``context`` and
        ``context_mask``, the rest ``h`` alone."""
        for layer in self.layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, context_mask)
            else:
                h = layer(h)
        return h


def run_block(
    block: UNetBlock,
    enabled: bool,
    h: Tensor,
    emb: Tensor,
    context: Tensor | None,
    context_mask: Tensor | None,
) -> Tensor:
    """Run ``block``, through activation checkpointing when ``enabled`` and gradients are being recorded."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(block, h, emb, context, context_mask, use_reentrant=False)
    return block(h, emb, context, context_mask)


class UNetEncoder(nn.Module):
    """The encoder half of the U-Net: embeddings, input blocks and the middle block.

    ``embed(t, y, pooled) -> emb: (B, time_embed_dim)``; ``forward(x, emb, ...) -> (skips, h)`` where
    ``skips`` holds one feature map per input block (``len(skip_channels)`` of them) and ``h`` is the
    middle block output.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = config.gradient_checkpointing
        c, emb_dim = config, config.time_embed_dim
        self.time_embed = TimestepEmbedder(emb_dim, frequency_dim=c.model_channels)
        self.class_embed = LabelEmbedder(c.num_classes, emb_dim) if c.num_classes is not None else None
        self.pooled_embed = (
            nn.Sequential(nn.Linear(c.pooled_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if c.pooled_dim is not None
            else None
        )
        ch = c.model_channels * c.channel_mult[0]
        self.input_blocks = nn.ModuleList([UNetBlock([conv_nd(c.dims, c.in_channels, ch, 3, padding=1)])])
        self.skip_channels: list[int] = [ch]
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers = [self._res(ch, c.model_channels * mult)]
                ch = c.model_channels * mult
                if level in c.attention_levels:
                    layers.append(self._attn(ch, c.depth_at(level)))
                self.input_blocks.append(UNetBlock(layers))
                self.skip_channels.append(ch)
            if level != len(c.channel_mult) - 1:
                self.input_blocks.append(UNetBlock([Downsample(ch, c.dims)]))
                self.skip_channels.append(ch)
        middle = [self._res(ch, ch)]
        if c.mid_attention:
            middle.append(self._attn(ch, c.mid_depth))
        middle.append(self._res(ch, ch))
        self.middle_block = UNetBlock(middle)
        self.out_channels = ch

    def _res(self, cin: int, cout: int) -> ResBlock:
        c = self.config
        return ResBlock(cin, cout, c.time_embed_dim, c.dims, c.num_groups, c.dropout, c.use_scale_shift_norm)

    def _attn(self, ch: int, depth: int) -> SpatialTransformer:
        c = self.config
        return SpatialTransformer(ch, heads_for_channels(c, ch), depth, c.context_dim, c.num_groups)

    def embed(self, t: Tensor, y: Tensor | None = None, pooled: Tensor | None = None) -> Tensor:
        """Time (+ class, + pooled) embedding ``(B, time_embed_dim)``; ``y=None`` means the null class."""
        emb = self.time_embed(t)
        if self.class_embed is not None:
            if y is None:
                y = torch.full((t.shape[0],), self.class_embed.null_class, dtype=torch.long, device=t.device)
            emb = emb + self.class_embed(y)
        if self.pooled_embed is not None and pooled is not None:
            emb = emb + self.pooled_embed(pooled)
        return emb

    def forward(
        self,
        x: Tensor,
        emb: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        hint: Tensor | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        """Run the input blocks and the middle block.

        ``hint`` (shaped like the first features) is added after the first conv (ControlNet).
        """
        skips: list[Tensor] = []
        h = x
        for i, block in enumerate(self.input_blocks):
            h = run_block(block, self.gradient_checkpointing, h, emb, context, context_mask)
            if i == 0 and hint is not None:
                h = h + hint
            skips.append(h)
        h = run_block(self.middle_block, self.gradient_checkpointing, h, emb, context, context_mask)
        return skips, h


def check_unet_inputs(
    config: UNetConfig,
    x: Tensor,
    t: Tensor,
    y: Tensor | None,
    context: Tensor | None,
    context_mask: Tensor | None,
    pooled: Tensor | None,
) -> Tensor:
    """Validate the U-Net inputs against ``config``; returns ``t`` as a ``(B,)`` tensor."""
    c = config
    if x.ndim != c.dims + 2:
        raise ValueError(
            f"x: expected {c.dims + 2} dims (B, C, {'L' if c.dims == 1 else 'H, W'}), got {tuple(x.shape)}"
        )
    if x.shape[1] != c.in_channels:
        raise ValueError(
            f"x: expected {c.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    spatial = tuple(x.shape[2:])
    if any(s % c.downsample_factor for s in spatial):
        raise ValueError(
            f"x: spatial size {spatial} must be divisible by the downsampling factor {c.downsample_factor} "
            f"(2 ** (len(channel_mult) - 1))"
        )
    b = x.shape[0]
    if t.ndim == 0:
        t = t.expand(b)
    if t.shape != (b,):
        raise ValueError(f"t: expected shape ({b},) with values in [0, 1], got {tuple(t.shape)}")
    if y is not None:
        if c.num_classes is None:
            raise ValueError("y: this U-Net has no class conditioning (config.num_classes is None)")
        if y.shape != (b,) or y.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"y: expected integer class indices of shape ({b},), got {y.dtype} {tuple(y.shape)}"
            )
    if context is not None:
        if c.context_dim is None:
            raise ValueError("context: this U-Net has no cross-attention (config.context_dim is None)")
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != c.context_dim:
            raise ValueError(f"context: expected shape ({b}, L, {c.context_dim}), got {tuple(context.shape)}")
    if context_mask is not None:
        if context is None:
            raise ValueError("context_mask: given without context")
        if context_mask.dtype != torch.bool or context_mask.shape != context.shape[:2]:
            raise ValueError(
                f"context_mask: expected a bool tensor of shape {tuple(context.shape[:2])} "
                "(True = real token), "
                f"got {context_mask.dtype} {tuple(context_mask.shape)}"
            )
    if pooled is not None:
        if c.pooled_dim is None:
            raise ValueError("pooled: this U-Net has no pooled conditioning (config.pooled_dim is None)")
        if pooled.shape != (b, c.pooled_dim):
            raise ValueError(f"pooled: expected shape ({b}, {c.pooled_dim}), got {tuple(pooled.shape)}")
    return t


class UNet(PretrainedModel):
    """ADM / Stable-Diffusion U-Net: ``net(x, t, y=, context=, context_mask=, pooled=, control=)``.

    Example::

        net = UNet(UNetConfig(in_channels=4, model_channels=64, context_dim=768))
        out = net(x, t, context=text_tokens, context_mask=token_mask)   # x: (B, 4, 32, 32), t: (B,)
    """

    config_class = UNetConfig
    # The blocks that each become one FSDP unit (TrainConfig.sharding="fsdp2"; the Hugging Face name).
    _no_split_modules: ClassVar[list[str]] = ["ResBlock", "SpatialTransformer"]

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = UNetEncoder(c)
        skip_channels = list(self.encoder.skip_channels)
        ch = self.encoder.out_channels
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers: list[nn.Module] = [
                    self.encoder._res(ch + skip_channels.pop(), c.model_channels * mult)
                ]
                ch = c.model_channels * mult
                if level in c.attention_levels:
                    layers.append(self.encoder._attn(ch, c.depth_at(level)))
                if level and i == c.num_res_blocks:
                    layers.append(Upsample(ch, c.dims))
                self.output_blocks.append(UNetBlock(layers))
        self.out = nn.Sequential(
            nn.GroupNorm(c.num_groups, ch),
            nn.SiLU(),
            zero_module(conv_nd(c.dims, ch, c.resolved_out_channels, 3, padding=1)),
        )

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether blocks recompute their activations in the backward pass (set it to switch)."""
        return self.encoder.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        self.encoder.gradient_checkpointing = bool(enabled)

    @property
    def skip_channels(self) -> list[int]:
        """Channels of each skip connection, in encoder order (what a ControlNet must produce)."""
        return list(self.encoder.skip_channels)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        control: ControlResiduals | None = None,
    ) -> Tensor:
        """Predict a tensor shaped like the output of ``x``.

        Args:
            x: ``(B, C, L)`` or ``(B, C, H, W)``, spatial sizes divisible by ``config.downsample_factor``.
            t: ``(B,)`` in [0, 1] (0 = data, 1 = noise); a 0-dim tensor is broadcast.
            y: ``(B,)`` class indices in ``[0, num_classes]``; ``num_classes`` or ``None``: the null class.
            context: ``(B, L, context_dim)`` tokens for cross-attention.
            context_mask: ``(B, L)`` bool, True for real tokens; padding tokens do not affect the output.
            pooled: ``(B, pooled_dim)`` vector added to the time embedding.
            control: ``(skip_residuals, mid_residual)`` from a ControlNet: one tensor per skip connection
                (shapes of the skips, encoder order) and one shaped like the middle block output.
        """
        t = check_unet_inputs(self.config, x, t, y, context, context_mask, pooled)
        emb = self.encoder.embed(t, y, pooled).to(x.dtype)
        skips, h = self.encoder(x, emb, context, context_mask)
        if control is not None:
            skips, h = self._add_control(skips, h, control)
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            h = run_block(block, self.gradient_checkpointing, h, emb, context, context_mask)
        return self.out(h)

    @staticmethod
    def _add_control(
        skips: list[Tensor], h: Tensor, control: ControlResiduals
    ) -> tuple[list[Tensor], Tensor]:
        skip_res, mid_res = control
        if len(skip_res) != len(skips):
            raise ValueError(f"control: expected {len(skips)} skip residuals, got {len(skip_res)}")
        for i, (s, r) in enumerate(zip(skips, skip_res, strict=True)):
            if r.shape != s.shape:
                raise ValueError(
                    f"control: skip residual {i} has shape {tuple(r.shape)}, expected {tuple(s.shape)}"
                )
        if mid_res.shape != h.shape:
            raise ValueError(
                f"control: mid residual has shape {tuple(mid_res.shape)}, expected {tuple(h.shape)}"
            )
        return [s + r for s, r in zip(skips, skip_res, strict=True)], h + mid_res


def sd15_unet_config(**overrides: Any) -> UNetConfig:
    """Stable Diffusion 1.x U-Net shape (Rombach et al. 2022): 859,520,964 parameters, as published.

    4 latent channels, widths 320/640/1280/1280, attention (8 heads) at the three finest levels,
    CLIP-L context of width 768, time embedding as an added bias. The parameter count matches;
    the weight layout does not (``proj_in``/``proj_out`` are linears here, 1x1 convs in SD 1.x).
    """
    base: dict[str, Any] = dict(
        in_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
        attention_levels=(0, 1, 2), num_heads=8, context_dim=768, use_scale_shift_norm=False,
    )  # fmt: skip
    return UNetConfig(**{**base, **overrides})


def sd2_unet_config(**overrides: Any) -> UNetConfig:
    """Stable Diffusion 2.x U-Net shape: 64-wide heads, OpenCLIP-H context of width 1024 (865,910,724 parameters)."""
    return sd15_unet_config(**{"head_dim": 64, "context_dim": 1024, **overrides})


def sdxl_unet_config(**overrides: Any) -> UNetConfig:
    """SDXL U-Net shape (Podell et al. 2023, Sec. 2.1): 2,567,463,684 parameters, as published.

    Three levels (320/640/1280) with 0, 2 and 10 transformer blocks, context of width 2048 (CLIP-L +
    OpenCLIP-bigG tokens) and ``pooled_dim=2816``: the caller concatenates the pooled bigG vector (1280)
    and the sinusoidal embeddings (256 each) of the six size/crop conditioning numbers.
    """
    base: dict[str, Any] = dict(
        in_channels=4, model_channels=320, channel_mult=(1, 2, 4), num_res_blocks=2,
        attention_levels=(1, 2), transformer_depth=(0, 2, 10), head_dim=64, context_dim=2048,
        pooled_dim=2816, use_scale_shift_norm=False,
    )  # fmt: skip
    return UNetConfig(**{**base, **overrides})
