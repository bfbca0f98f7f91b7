"""ControlNet (Zhang, Rao & Agrawala 2023, "Adding Conditional Control to Text-to-Image Diffusion Models").

A ControlNet is a trainable copy of the encoder of a frozen network. A spatial condition ``c``
(edges, depth, pose, a low-resolution signal, ...) enters the copy through a small conv encoder,
and the copy's features leave through *zero-initialised* projections (Eq. 2-4: ``y_c = F(x) +
Z(F(x + Z(c)))``), so at initialisation the controlled network equals the frozen one exactly and
training starts from it.

* :class:`UNetControlNet`: copy of a :class:`~diffcore.nn.unet.UNet`'s encoder half and middle
  block; the condition is added to the first features; zero 1x1 convs give one residual per skip
  connection and one for the middle block: ``control=(skip_residuals, mid_residual)``.
* :class:`DiTControlNet`: copy of a :class:`~diffcore.nn.dit.DiT`'s embedders and first ``N``
  blocks; the condition is patch-embedded and added to the tokens; zero linears give one
  ``(B, N_tokens, D)`` residual per copied block: ``control=[r_0, ..., r_{N-1}]``.
* :class:`MMDiTControlNet`: SD3-ControlNet style copy of an :class:`~diffcore.nn.mmdit.MMDiT`'s embedders
  and first ``N`` joint blocks (image and text streams); the condition is patch-embedded like the image
  tokens through a zero-initialised projection and added to them; zero linears give one ``(B, N_tokens, D)``
  image-token residual per copied block: ``control=[r_0, ..., r_{N-1}]``.
* :class:`MultiControlNet` sums the residuals of several ControlNets, each times its scale.
* :class:`ControlledModel` meets the network contract ``net(x, t, control_cond=..., **cond)``
  with the base frozen.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffcore.nn.dit import DiT, DiTConfig, config_pos_embed, dit_layers
from diffcore.nn.embeddings import (
    LabelEmbedder,
    PatchEmbed,
    RotaryEmbedding,
    TimestepEmbedder,
    grid_positions,
)
from diffcore.nn.mmdit import (
    MMDiT,
    MMDiTBlock,
    MMDiTConfig,
    check_mmdit_inputs,
    joint_attention_mask,
    mmdit_conditioning,
)
from diffcore.nn.unet import UNet, UNetConfig, UNetEncoder, check_unet_inputs, conv_nd, zero_module
from diffcore.pretrained import PretrainedModel

UNetResiduals = tuple[list[Tensor], Tensor]
DiTResiduals = list[Tensor]
Residuals = UNetResiduals | DiTResiduals


def _nested_config(cls: type, value: Any, name: str) -> Any:
    """Accept a nested config as an instance or as the dict that ``config.json`` stores."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{name}: keys {unknown} are not fields of {cls.__name__}")
        return cls(**value)
    raise TypeError(f"{name}: expected a {cls.__name__} or a dict, got {type(value).__name__}")


def _check_hint(hint_channels: tuple[int, ...], hint_downscale: int) -> int:
    """Number of stride-2 convs needed for ``hint_downscale``; checks the encoder is deep enough."""
    if not hint_channels or any(c < 1 for c in hint_channels):
        raise ValueError(f"hint_channels: expected a non-empty tuple of positive ints, got {hint_channels}")
    n_down = int(math.log2(hint_downscale)) if hint_downscale >= 1 else -1
    if hint_downscale < 1 or 2**n_down != hint_downscale:
        raise ValueError(f"hint_downscale: expected a power of two >= 1, got {hint_downscale}")
    if n_down > len(hint_channels) - 1:
        raise ValueError(
            f"hint_downscale: {hint_downscale} needs {n_down} stride-2 stages but hint_channels "
            f"{hint_channels} gives {len(hint_channels) - 1}"
        )
    return n_down


class ConditionEncoder(nn.Module):
    """Small conv stack from a condition map to the network's first features (ControlNet Sec. 3.2).

    ``(B, C_cond, *(S * hint_downscale))`` -> ``(B, out_channels, *S)``: a conv to ``hint_channels[0]``,
    then per stage a conv and a conv to the next width (stride 2 for the first ``log2(hint_downscale)``
    stages), SiLU after each, and a zero-initialised last conv. With ``out_channels=None`` there is
    no last conv and the output has ``hint_channels[-1]`` channels (the caller adds its own zero layer).
    """

    def __init__(
        self,
        dims: int,
        conditioning_channels: int,
        out_channels: int | None,
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
        hint_downscale: int = 1,
    ) -> None:
        super().__init__()
        n_down = _check_hint(hint_channels, hint_downscale)
        self.dims = dims
        self.downscale = hint_downscale
        layers: list[nn.Module] = [
            conv_nd(dims, conditioning_channels, hint_channels[0], 3, padding=1),
            nn.SiLU(),
        ]
        for i, (cin, cout) in enumerate(itertools.pairwise(hint_channels)):
            stride = 2 if i < n_down else 1
            layers += [conv_nd(dims, cin, cin, 3, padding=1), nn.SiLU()]
            layers += [conv_nd(dims, cin, cout, 3, padding=1, stride=stride), nn.SiLU()]
        if out_channels is not None:
            layers.append(zero_module(conv_nd(dims, hint_channels[-1], out_channels, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, cond: Tensor) -> Tensor:
        """The condition map ``(B, C_cond, *spatial)`` through the conv stack to the feature size of the
        copied network."""
        return self.net(cond)


def _check_cond(cond: Tensor, x: Tensor, channels: int, downscale: int) -> None:
    expected = (x.shape[0], channels, *(s * downscale for s in x.shape[2:]))
    if tuple(cond.shape) != expected:
        raise ValueError(
            f"control_cond: expected shape {expected} (batch, conditioning_channels, spatial of x "
            f"times hint_downscale={downscale}), got {tuple(cond.shape)}"
        )


@dataclass
class UNetControlNetConfig:
    """A :class:`UNetControlNet`: the base U-Net's config and the condition encoder's shape.

    ``hint_downscale``: the condition map is this many times larger than ``x`` per spatial axis
    (8 for Stable Diffusion: 512 px edges for a 64 x 64 latent).
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    conditioning_channels: int = 3
    hint_channels: tuple[int, ...] = (16, 32, 96, 256)
    hint_downscale: int = 1

    def __post_init__(self) -> None:
        self.unet = _nested_config(UNetConfig, self.unet, "unet")
        self.hint_channels = tuple(self.hint_channels)
        if self.conditioning_channels < 1:
            raise ValueError(f"conditioning_channels: expected >= 1, got {self.conditioning_channels}")
        _check_hint(self.hint_channels, self.hint_downscale)


class UNetControlNet(PretrainedModel):
    """ControlNet for :class:`~diffcore.nn.unet.UNet`: ``(x, t, cond, **cond_kwargs) -> (skip_residuals, mid)``.

    Build it from a trained U-Net with :meth:`from_unet` (copies the encoder weights).
    """

    config_class = UNetControlNetConfig
    config: UNetControlNetConfig

    def __init__(self, config: UNetControlNetConfig) -> None:
        super().__init__(config)
        u = config.unet
        self.encoder = UNetEncoder(u)
        first = self.encoder.skip_channels[0]
        self.cond_encoder = ConditionEncoder(
            u.dims, config.conditioning_channels, first, config.hint_channels, config.hint_downscale
        )
        self.zero_convs = nn.ModuleList(
            zero_module(conv_nd(u.dims, c, c, 1)) for c in self.encoder.skip_channels
        )
        self.mid_zero_conv = zero_module(
            conv_nd(u.dims, self.encoder.out_channels, self.encoder.out_channels, 1)
        )

    @classmethod
    def from_unet(
        cls,
        unet: UNet,
        conditioning_channels: int = 3,
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
        hint_downscale: int = 1,
    ) -> UNetControlNet:
        """A ControlNet whose encoder starts as a copy of ``unet``'s encoder (embeddings, input, middle)."""
        config = UNetControlNetConfig(
            dataclasses.replace(unet.config), conditioning_channels, hint_channels, hint_downscale
        )
        net = cls(config)
        net.encoder.load_state_dict(unet.encoder.state_dict())
        return net.to(next(unet.parameters()).device)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor,
        y: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> UNetResiduals:
        """Residuals for the base U-Net's ``control=``.

        Args:
            x, t, y, context, context_mask, pooled: as for :meth:`UNet.forward`.
            cond: ``(B, conditioning_channels, *(S * hint_downscale))`` condition map.

        Returns:
            ``(skip_residuals, mid_residual)``: one tensor per skip connection, shaped like it, and
            one shaped like the middle block output; all zero at initialisation.
        """
        c = self.config
        t = check_unet_inputs(c.unet, x, t, y, context, context_mask, pooled)
        _check_cond(cond, x, c.conditioning_channels, c.hint_downscale)
        emb = self.encoder.embed(t, y, pooled).to(x.dtype)
        hint = self.cond_encoder(cond.to(x.dtype))
        skips, h = self.encoder(x, emb, context, context_mask, hint=hint)
        return [zc(s) for zc, s in zip(self.zero_convs, skips, strict=True)], self.mid_zero_conv(h)


@dataclass
class DiTControlNetConfig:
    """A :class:`DiTControlNet`: the base DiT's config, how many blocks to copy, the condition encoder.

    ``num_blocks``: copied blocks (``None``: half the depth, at least 1). ``hint_downscale``: the
    condition map is this many times larger than ``x`` per spatial axis.
    """

    dit: DiTConfig = field(default_factory=DiTConfig)
    num_blocks: int | None = None
    conditioning_channels: int = 3
    hint_channels: tuple[int, ...] = (16, 32, 96, 256)
    hint_downscale: int = 1

    def __post_init__(self) -> None:
        self.dit = _nested_config(DiTConfig, self.dit, "dit")
        self.hint_channels = tuple(self.hint_channels)
        if self.num_blocks is None:
            self.num_blocks = max(1, self.dit.depth // 2)
        if not 1 <= self.num_blocks <= self.dit.depth:
            raise ValueError(
                f"num_blocks: expected 1..{self.dit.depth} (the DiT depth), got {self.num_blocks}"
            )
        if self.conditioning_channels < 1:
            raise ValueError(f"conditioning_channels: expected >= 1, got {self.conditioning_channels}")
        if len(self.dit.input_size) > 2:
            raise ValueError(
                "dit: DiTControlNet supports 1D and 2D inputs (its condition encoder is conv1d/2d)"
            )
        _check_hint(self.hint_channels, self.hint_downscale)


class DiTControlNet(PretrainedModel):
    """ControlNet for :class:`~diffcore.nn.dit.DiT`: ``(x, t, cond, y=None) -> [r_0, ..., r_{N-1}]``.

    A copy of the DiT's patch, time and label embedders and of its first ``num_blocks`` blocks. The
    condition goes through a conv encoder and a zero-initialised patch embedding and is added to
    the tokens; each copied block's output goes through a zero-initialised linear. Build it from a
    trained DiT with :meth:`from_dit`.
    """

    config_class = DiTControlNetConfig
    config: DiTControlNetConfig
    pos_embed: Tensor

    def __init__(self, config: DiTControlNetConfig) -> None:
        super().__init__(config)
        d_cfg = config.dit
        d, ndim = d_cfg.hidden_size, len(d_cfg.input_size)
        self.x_embedder = PatchEmbed(d_cfg.in_channels, d, d_cfg.patch_size, ndim=ndim)
        self.t_embedder = TimestepEmbedder(d, freq_shift=d_cfg.time_freq_shift)
        self.y_embedder = LabelEmbedder(d_cfg.num_classes, d) if d_cfg.num_classes > 0 else None
        self.rope = RotaryEmbedding(d // d_cfg.num_heads, ndim, d_cfg.rope_theta)
        self.register_buffer("pos_embed", config_pos_embed(d_cfg, d_cfg.grid_size), persistent=False)
        block, _ = dit_layers(d_cfg.fused_kernels)  # the base's block, plain or fused
        self.blocks = nn.ModuleList(
            block(d, d_cfg.num_heads, d_cfg.mlp_ratio, d_cfg.qk_norm) for _ in range(config.num_blocks or 1)
        )
        hint_out = config.hint_channels[-1]
        self.cond_encoder = ConditionEncoder(
            ndim, config.conditioning_channels, None, config.hint_channels, config.hint_downscale
        )
        # The zero-initialised layer of the condition path is its patch embedding into tokens.
        self.cond_embedder = PatchEmbed(hint_out, d, d_cfg.patch_size, ndim=ndim)
        zero_module(self.cond_embedder)
        self.zero_linears = nn.ModuleList(zero_module(nn.Linear(d, d)) for _ in self.blocks)

    @classmethod
    def from_dit(
        cls,
        dit: DiT,
        num_blocks: int | None = None,
        conditioning_channels: int = 3,
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
        hint_downscale: int = 1,
    ) -> DiTControlNet:
        """A ControlNet whose embedders and blocks start as copies of ``dit``'s first ``num_blocks``."""
        config = DiTControlNetConfig(
            dataclasses.replace(dit.config), num_blocks, conditioning_channels, hint_channels, hint_downscale
        )
        net = cls(config)
        net.x_embedder.load_state_dict(dit.x_embedder.state_dict())
        net.t_embedder.load_state_dict(dit.t_embedder.state_dict())
        if net.y_embedder is not None and dit.y_embedder is not None:
            net.y_embedder.load_state_dict(dit.y_embedder.state_dict())
        for copy, block in zip(net.blocks, dit.blocks, strict=False):
            copy.load_state_dict(block.state_dict())
        return net.to(next(dit.parameters()).device)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor, y: Tensor | None = None) -> DiTResiduals:
        """Residuals for the base DiT's ``control=``.

        Args:
            x: ``(B, C, *spatial)``; t: ``(B,)`` in [0, 1]; y: ``(B,)`` labels or ``None`` (null class).
            cond: ``(B, conditioning_channels, *(spatial * hint_downscale))`` condition map.

        Returns:
            ``num_blocks`` tensors ``(B, N_tokens, hidden_size)``, all zero at initialisation.
        """
        c = self.config
        self._check_inputs(x, t, y)
        _check_cond(cond, x, c.conditioning_channels, c.hint_downscale)
        grid = self.x_embedder.grid_size(x.shape[2:])
        h = self.x_embedder(x) + self.cond_embedder(self.cond_encoder(cond.to(x.dtype)))
        rope = None
        if c.dit.pos_embed == "sincos":
            pos = self.pos_embed if grid == c.dit.grid_size else config_pos_embed(c.dit, grid, x.device)
            h = h + pos.to(h.dtype)
        else:
            rope = self.rope(grid_positions(grid, device=x.device))
        emb = self.t_embedder(t)
        if self.y_embedder is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.y_embedder.null_class, dtype=torch.long, device=x.device)
            emb = emb + self.y_embedder(y)
        emb = F.silu(emb)
        residuals = []
        for block, zero_linear in zip(self.blocks, self.zero_linears, strict=True):
            h = block(h, emb, rope)
            residuals.append(zero_linear(h))
        return residuals

    def _check_inputs(self, x: Tensor, t: Tensor, y: Tensor | None) -> None:
        d_cfg = self.config.dit
        if x.ndim != 2 + len(d_cfg.input_size) or x.shape[1] != d_cfg.in_channels:
            raise ValueError(
                f"x: expected (B, {d_cfg.in_channels}, <{len(d_cfg.input_size)} spatial sizes>), got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected shape ({x.shape[0]},) in [0, 1], got {tuple(t.shape)}")
        if y is not None and (self.y_embedder is None or y.shape != (x.shape[0],)):
            raise ValueError(
                f"y: expected ({x.shape[0]},) labels for a class-conditional DiT, got {tuple(y.shape)}"
            )


@dataclass
class MMDiTControlNetConfig:
    """A :class:`MMDiTControlNet`: the base MMDiT's config, how many joint blocks to copy, the condition encoder.

    ``num_blocks``: copied blocks (``None``: half the depth, at least 1; SD3-ControlNet copies a few).
    ``hint_downscale``: the condition map is this many times larger than ``x`` per spatial axis (8 for a
    pixel-space map steering an 8x-downsampled latent model).
    """

    mmdit: MMDiTConfig = field(default_factory=MMDiTConfig)
    num_blocks: int | None = None
    conditioning_channels: int = 3
    hint_channels: tuple[int, ...] = (16, 32, 96, 256)
    hint_downscale: int = 1

    def __post_init__(self) -> None:
        self.mmdit = _nested_config(MMDiTConfig, self.mmdit, "mmdit")
        self.hint_channels = tuple(self.hint_channels)
        if self.num_blocks is None:
            self.num_blocks = max(1, self.mmdit.depth // 2)
        if not 1 <= self.num_blocks <= self.mmdit.depth:
            raise ValueError(
                f"num_blocks: expected 1..{self.mmdit.depth} (the MMDiT depth), got {self.num_blocks}"
            )
        if self.conditioning_channels < 1:
            raise ValueError(f"conditioning_channels: expected >= 1, got {self.conditioning_channels}")
        if len(self.mmdit.input_size) > 2:
            raise ValueError(
                "mmdit: MMDiTControlNet supports 1D and 2D inputs (its condition encoder is conv1d/2d)"
            )
        _check_hint(self.hint_channels, self.hint_downscale)


class MMDiTControlNet(PretrainedModel):
    """ControlNet for :class:`~diffcore.nn.mmdit.MMDiT` (the SD3-ControlNet layout):
    ``(x, t, cond, context=None, context_mask=None, pooled=None) -> [r_0, ..., r_{N-1}]``.

    A trainable copy of the MMDiT's patch, time, pooled-text and context embedders and of its first
    ``num_blocks`` joint blocks, both streams (the copied text stream keeps updating the context the copied
    image stream attends to). The condition map goes through a conv encoder and a zero-initialised patch
    embedding with the image tokens' patch size, and is added to the image tokens (Zhang et al. 2023, Eq. 2:
    ``Z(c)`` with ``Z`` zero at start); each copied block's image tokens leave through a zero-initialised
    linear (``Z`` of the output), so the residuals, and hence the controlled output's change, start at zero.
    Build it from a trained MMDiT with :meth:`from_mmdit`.
    """

    config_class = MMDiTControlNetConfig
    config: MMDiTControlNetConfig
    pos_embed: Tensor

    def __init__(self, config: MMDiTControlNetConfig) -> None:
        super().__init__(config)
        m = config.mmdit
        d, ndim = m.hidden_size, len(m.input_size)
        self.x_embedder = PatchEmbed(m.in_channels, d, m.patch_size, ndim=ndim)
        self.t_embedder = TimestepEmbedder(d, freq_shift=m.time_freq_shift)
        self.pooled_embedder = (
            nn.Sequential(nn.Linear(m.pooled_dim, d), nn.SiLU(), nn.Linear(d, d)) if m.pooled_dim else None
        )
        self.context_embedder = nn.Linear(m.context_dim, d)
        self.rope = RotaryEmbedding(d // m.num_heads, ndim, m.rope_theta)
        self.register_buffer("pos_embed", config_pos_embed(m, m.grid_size), persistent=False)
        # Block i of the copy has the same layout as block i of the base (the base's last is context_pre_only).
        self.blocks = nn.ModuleList(
            MMDiTBlock(d, m.num_heads, m.mlp_ratio, m.qk_norm, context_pre_only=i == m.depth - 1)
            for i in range(config.num_blocks or 1)
        )
        self.cond_encoder = ConditionEncoder(
            ndim, config.conditioning_channels, None, config.hint_channels, config.hint_downscale
        )
        self.cond_embedder = zero_module(PatchEmbed(config.hint_channels[-1], d, m.patch_size, ndim=ndim))
        self.zero_linears = nn.ModuleList(zero_module(nn.Linear(d, d)) for _ in self.blocks)
        self.gradient_checkpointing = m.gradient_checkpointing

    @classmethod
    def from_mmdit(
        cls,
        mmdit: MMDiT,
        num_blocks: int | None = None,
        conditioning_channels: int = 3,
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
        hint_downscale: int = 1,
    ) -> MMDiTControlNet:
        """A ControlNet whose embedders and joint blocks start as copies of ``mmdit``'s first ``num_blocks``."""
        config = MMDiTControlNetConfig(
            dataclasses.replace(mmdit.config),
            num_blocks,
            conditioning_channels,
            hint_channels,
            hint_downscale,
        )
        net = cls(config)
        for name in ("x_embedder", "t_embedder", "pooled_embedder", "context_embedder"):
            copy = getattr(net, name)
            if copy is not None:
                copy.load_state_dict(getattr(mmdit, name).state_dict())
        for copy, block in zip(net.blocks, mmdit.blocks, strict=False):
            copy.load_state_dict(block.state_dict())
        return net.to(next(mmdit.parameters()).device)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> DiTResiduals:
        """Residuals for the base MMDiT's ``control=``.

        Args:
            x, t, context, context_mask, pooled: as for :meth:`MMDiT.forward` (``t`` ``(B,)`` in [0, 1],
                0 = data).
            cond: ``(B, conditioning_channels, *(spatial * hint_downscale))`` condition map.

        Returns:
            ``num_blocks`` image-token tensors ``(B, N_tokens, hidden_size)``, all zero at initialisation.
        """
        m = self.config.mmdit
        check_mmdit_inputs(m, x, t, context, context_mask, pooled)
        _check_cond(cond, x, self.config.conditioning_channels, self.config.hint_downscale)
        grid = self.x_embedder.grid_size(x.shape[2:])
        h = self.x_embedder(x) + self.cond_embedder(self.cond_encoder(cond.to(x.dtype)))
        rope = None
        if m.pos_embed == "sincos":
            pos = self.pos_embed if grid == m.grid_size else config_pos_embed(m, grid, x.device)
            h = h + pos.to(h.dtype)
        else:
            rope = self.rope(grid_positions(grid, device=x.device))
        c = mmdit_conditioning(self.t_embedder, self.pooled_embedder, t, pooled)
        ctx = self.context_embedder(context) if context is not None else None
        mask = joint_attention_mask(context_mask, h) if ctx is not None else None
        residuals = []
        for block, zero_linear in zip(self.blocks, self.zero_linears, strict=True):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h, ctx = checkpoint(block, h, ctx, c, mask, rope, use_reentrant=False)
            else:
                h, ctx = block(h, ctx, c, mask, rope)
            residuals.append(zero_linear(h))
        return residuals


ControlNet = UNetControlNet | DiTControlNet | MMDiTControlNet


def _weighted_sum(tensors: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    out = weights[0] * tensors[0]
    for w, tensor in zip(weights[1:], tensors[1:], strict=True):
        out = out + w * tensor
    return out


def _scaled_sum(parts: Sequence[Residuals], scales: Sequence[float]) -> Residuals:
    """``sum_i scales[i] * parts[i]`` for U-Net ``(list, mid)`` or DiT / MMDiT ``list`` residuals.

    DiT and MMDiT ControlNets may copy different numbers of blocks: block ``j`` gets the sum over those that reach it.
    """
    if isinstance(parts[0], tuple):
        unet_parts: list[UNetResiduals] = list(parts)  # type: ignore[arg-type]
        skips = [_weighted_sum([p[0][j] for p in unet_parts], scales) for j in range(len(unet_parts[0][0]))]
        return skips, _weighted_sum([p[1] for p in unet_parts], scales)
    depth = max(len(p) for p in parts)
    summed = []
    for j in range(depth):
        reach = [(p[j], s) for p, s in zip(parts, scales, strict=True) if len(p) > j]
        summed.append(_weighted_sum([r for r, _ in reach], [s for _, s in reach]))  # type: ignore[misc]
    return summed


class MultiControlNet(nn.Module):
    """Several ControlNets of one base; residuals ``sum_i scales[i] * controlnet_i(x, t, conds[i], **cond)``.

    ``scales`` is a plain list that may be changed between calls (per-control strength at sampling).
    """

    def __init__(self, controlnets: Sequence[ControlNet], scales: Sequence[float] | None = None) -> None:
        super().__init__()
        if not controlnets:
            raise ValueError("controlnets: expected at least one ControlNet")
        kinds = {type(c) for c in controlnets}
        if len(kinds) != 1 or not issubclass(
            next(iter(kinds)), (UNetControlNet, DiTControlNet, MMDiTControlNet)
        ):
            raise TypeError(
                f"controlnets: expected ControlNets of one kind, got {sorted(k.__name__ for k in kinds)}"
            )
        self.controlnets = nn.ModuleList(controlnets)
        self.scales = [1.0] * len(controlnets) if scales is None else [float(s) for s in scales]
        if len(self.scales) != len(controlnets):
            raise ValueError(
                f"scales: expected {len(controlnets)} scales (one per ControlNet), got {len(self.scales)}"
            )

    def forward(self, x: Tensor, t: Tensor, conds: Sequence[Tensor], **cond: Any) -> Residuals:
        """``conds``: one condition map per ControlNet; ``cond``: the base network's conditioning."""
        if len(conds) != len(self.controlnets):
            raise ValueError(
                f"control_cond: expected {len(self.controlnets)} condition maps, got {len(conds)}"
            )
        parts = [net(x, t, c, **cond) for net, c in zip(self.controlnets, conds, strict=True)]
        return _scaled_sum(parts, self.scales)


_CONTROLNET_OF: dict[type, type] = {UNet: UNetControlNet, DiT: DiTControlNet, MMDiT: MMDiTControlNet}


class ControlledModel(nn.Module):
    """A frozen base network steered by ControlNets: ``net(x, t, control_cond=..., **cond) -> like x``.

    ``control_cond``: one condition map, or a sequence of them (one per ControlNet); ``None`` runs
    the base alone. Base parameters have ``requires_grad=False`` and the base stays in eval mode
    (``train()`` switches only the ControlNets).
    """

    def __init__(
        self,
        base: UNet | DiT | MMDiT,
        controlnets: ControlNet | Sequence[ControlNet],
        scales: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        nets = [controlnets] if isinstance(controlnets, nn.Module) else list(controlnets)
        expected = next((cn for kind, cn in _CONTROLNET_OF.items() if isinstance(base, kind)), None)
        if expected is None:
            raise TypeError(f"base: expected a UNet, a DiT or an MMDiT, got {type(base).__name__}")
        if not all(isinstance(n, expected) for n in nets):
            raise TypeError(f"controlnets: a {type(base).__name__} base takes {expected.__name__}s")
        self.base = base.requires_grad_(False).eval()
        self.control = MultiControlNet(nets, scales)

    @property
    def scales(self) -> list[float]:
        """Per-ControlNet strengths (settable)."""
        return self.control.scales

    @scales.setter
    def scales(self, values: Sequence[float]) -> None:
        if len(values) != len(self.control.controlnets):
            raise ValueError(f"scales: expected {len(self.control.controlnets)} values, got {len(values)}")
        self.control.scales = [float(v) for v in values]

    def train(self, mode: bool = True) -> ControlledModel:
        """Set the ControlNets' training mode; the frozen base always stays in eval mode."""
        super().train(mode)
        self.base.eval()
        return self

    def forward(
        self, x: Tensor, t: Tensor, control_cond: Tensor | Sequence[Tensor] | None = None, **cond: Any
    ) -> Tensor:
        """``x``, ``t`` and ``cond`` as for the base network; ``control_cond`` as in the class docstring."""
        if control_cond is None:
            return self.base(x, t, **cond)
        conds = [control_cond] if isinstance(control_cond, Tensor) else list(control_cond)
        residuals = self.control(x, t, conds, **cond)
        return self.base(x, t, control=residuals, **cond)
