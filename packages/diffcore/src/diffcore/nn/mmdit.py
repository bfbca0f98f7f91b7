"""MMDiT: the multimodal diffusion transformer of Stable Diffusion 3 (Esser et al. 2024, "Scaling
Rectified Flow Transformers for High-Resolution Image Synthesis", Sec. 4 and Fig. 2).

Two token streams, image patches and text context, keep separate weights (adaLN modulation, QKV,
output projection, MLP) and meet in one joint attention over their concatenation
``[context; image]``. The conditioning vector is ``timestep embedding + MLP(pooled text)``, where
``pooled`` concatenates several pooled encoders (SD3: CLIP-L 768 + CLIP-G 1280 = 2048); the context
is a sequence encoder's tokens (SD3: T5-XXL, 4096 wide, with CLIP tokens zero-padded to that width)
projected to the model width.

Contract: ``MMDiT(x, t, context=None, context_mask=None, pooled=None, control=None, w=None)`` with ``x`` ``(B, C, *spatial)``,
``t`` ``(B,)`` in [0, 1] (0 = data, 1 = noise), ``context`` ``(B, M, context_dim)``, ``context_mask``
``(B, M)`` bool (True = real token), ``pooled`` ``(B, pooled_dim)``; returns a tensor shaped like
``x``. The context can be dropped at inference: ``context=None`` runs the image stream alone (the
same as a fully masked context), and zeros (SD3's stand-in for a missing T5) run as ordinary tokens.
``pooled=None`` adds nothing to the conditioning vector. ``control``: optional list of ``K <= depth``
residuals ``(B, N, hidden_size)`` in image-token layout, ``control[i]`` added to the image tokens after
block ``i`` (an :class:`~diffcore.nn.controlnet.MMDiTControlNet`, SD3-ControlNet style). ``w``: ``(B,)``
classifier-free guidance scales, required exactly when the config has ``guidance_embed`` (FLUX's guidance
embedding; LCM's guidance-scale conditioning, Luo et al. 2023, Sec. 4.2), embedded like ``t`` and added to the
conditioning vector (:class:`~diffcore.nn.dit.GuidanceEmbedder`).

The modulations of both streams and the output layer start at zero, so a fresh model outputs zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffcore.nn.attention import QKVProjection, Rope, attend
from diffcore.nn.dit import (
    FinalLayer,
    GuidanceEmbedder,
    Mlp,
    check_attention_layout,
    check_guidance_input,
    check_guidance_max,
    check_pos_layout,
    config_pos_embed,
    init_adaln_zero,
    modulate,
    patch_geometry,
    patch_grid,
)
from diffcore.nn.embeddings import (
    PatchEmbed,
    RotaryEmbedding,
    TimestepEmbedder,
    grid_positions,
    unpatchify,
)
from diffcore.pretrained import PretrainedModel


@dataclass
class MMDiTConfig:
    """MMDiT hyper-parameters (defaults: SD3-medium, depth 24, on 128x128x16 latents).

    ``pooled_dim = 0`` builds no pooled-text embedder. ``pos_embed`` is ``"sincos"`` (fixed
    embedding added to image tokens, as SD3) or ``"rope"`` (axial RoPE on image tokens; context
    tokens are not rotated). ``guidance_embed`` adds a guidance-scale input ``w`` scaled by
    ``1 / guidance_max`` (:class:`~diffcore.nn.dit.GuidanceEmbedder`). ``time_freq_shift`` and the
    ``pos_embed_*`` layout fields mean what they mean in :class:`~diffcore.nn.dit.DiTConfig` (SD3's
    checkpoints: ``"xy"`` axes, a centre crop of a larger table as ``offset`` and ``step``).
    """

    input_size: tuple[int, ...] = (128, 128)
    patch_size: tuple[int, ...] | int = 2
    in_channels: int = 16
    hidden_size: int = 1536
    depth: int = 24
    num_heads: int = 24
    mlp_ratio: float = 4.0
    pooled_dim: int = 2048
    context_dim: int = 4096
    qk_norm: bool = False
    pos_embed: str = "sincos"
    rope_theta: float = 10000.0
    gradient_checkpointing: bool = False
    guidance_embed: bool = False
    guidance_max: float = 8.0
    time_freq_shift: float = 0.0
    pos_embed_axes: str = "ij"
    pos_embed_offset: tuple[float, ...] | float = 0.0
    pos_embed_step: float = 1.0

    def __post_init__(self) -> None:
        self.input_size, self.patch_size = patch_geometry(self.input_size, self.patch_size)
        check_attention_layout(self.hidden_size, self.num_heads, self.pos_embed)
        check_guidance_max(self.guidance_max)
        self.pos_embed_offset = check_pos_layout(
            self.pos_embed_axes, self.pos_embed_offset, len(self.input_size)
        )
        if self.pooled_dim < 0 or self.context_dim < 1 or self.depth < 1:
            raise ValueError(
                f"pooled_dim >= 0, context_dim >= 1, depth >= 1 expected, got "
                f"{self.pooled_dim}, {self.context_dim}, {self.depth}"
            )

    @property
    def grid_size(self) -> tuple[int, ...]:
        """Patch-grid size of the configured input."""
        return patch_grid(self.input_size, self.patch_size)


class StreamAttentionIn(nn.Module):
    """One stream's half of joint attention: adaLN-modulated LayerNorm then fused QKV (+ QK-norm)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = QKVProjection(dim, num_heads, bias=True, qk_norm=qk_norm)

    def forward(
        self, x: Tensor, shift: Tensor, scale: Tensor, rope: Rope | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values ``(B, H, N, Dh)`` of one stream's tokens ``x: (B, N, D)`` after the
        modulated LayerNorm (``shift``, ``scale`` of shape ``(B, 1, D)``), with QK-norm and optional RoPE."""
        return self.qkv(modulate(self.norm(x), shift, scale), rope)


class StreamOut(nn.Module):
    """One stream's residual updates after joint attention: gated output projection, gated MLP."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: Tensor, attn: Tensor, gate_a: Tensor, shift: Tensor, scale: Tensor, gate_m: Tensor
    ) -> Tensor:
        """One stream's two gated residuals: ``x + gate_a * proj(attn)``, then
        ``x + gate_m * mlp(modulate(norm(x), shift, scale))``."""
        x = torch.addcmul(x, gate_a, self.proj(attn))
        return torch.addcmul(x, gate_m, self.mlp(modulate(self.norm(x), shift, scale)))


class MMDiTBlock(nn.Module):
    """Joint block (SD3 Fig. 2b). ``context_pre_only``: the last block only feeds context keys/values.

    ``x``: ``(B, N, D)`` image tokens; ``context``: ``(B, M, D)`` or None; ``c``: ``(B, D)`` after SiLU;
    ``mask``: ``(B, M + N)`` bool over the joint keys or None.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qk_norm: bool, context_pre_only: bool = False
    ) -> None:
        super().__init__()
        self.context_pre_only = context_pre_only
        self.x_modulation = nn.Linear(dim, 6 * dim)
        self.x_in = StreamAttentionIn(dim, num_heads, qk_norm)
        self.x_out = StreamOut(dim, mlp_ratio)
        self.c_modulation = nn.Linear(dim, (2 if context_pre_only else 6) * dim)
        self.c_in = StreamAttentionIn(dim, num_heads, qk_norm)
        self.c_out = None if context_pre_only else StreamOut(dim, mlp_ratio)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None,
        c: Tensor,
        mask: Tensor | None = None,
        rope: Rope | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Joint attention of SD3 (Esser et al. 2024, Fig. 2): image tokens ``x: (B, N, D)`` and text tokens
        ``context: (B, M, D)`` attend together, each stream with its own weights and adaLN from
        ``c: (B, D)``; returns ``(x, context)`` updated (``context`` None in the last, context-pre-only
        block or without text)."""
        xm = self.x_modulation(c)[:, None].chunk(6, dim=-1)
        q, k, v = self.x_in(x, xm[0], xm[1], rope)
        if context is None:
            return self.x_out(x, attend(q, k, v, mask), *xm[2:]), None
        cm = self.c_modulation(c)[:, None].chunk(2 if self.context_pre_only else 6, dim=-1)
        qc, kc, vc = self.c_in(context, cm[0], cm[1])
        out = attend(torch.cat([qc, q], 2), torch.cat([kc, k], 2), torch.cat([vc, v], 2), mask)
        m = context.shape[1]
        x = self.x_out(x, out[:, m:], *xm[2:])
        if self.c_out is None:
            return x, None
        return x, self.c_out(context, out[:, :m], *cm[2:])


class MMDiT(PretrainedModel):
    """Multimodal Diffusion Transformer (SD3) over 1D/2D/3D inputs; see the module docstring."""

    config_class = MMDiTConfig
    # The blocks that each become one FSDP unit (TrainConfig.sharding="fsdp2"; the Hugging Face name).
    _no_split_modules: ClassVar[list[str]] = ["MMDiTBlock"]
    config: MMDiTConfig
    pos_embed: Tensor

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.in_channels, d, config.patch_size, ndim=len(config.input_size))
        self.t_embedder = TimestepEmbedder(d, freq_shift=config.time_freq_shift)
        self.pooled_embedder = (
            nn.Sequential(nn.Linear(config.pooled_dim, d), nn.SiLU(), nn.Linear(d, d))
            if config.pooled_dim
            else None
        )
        self.context_embedder = nn.Linear(config.context_dim, d)
        self.w_embedder = GuidanceEmbedder(d, config.guidance_max) if config.guidance_embed else None
        self.rope = RotaryEmbedding(d // config.num_heads, len(config.input_size), config.rope_theta)
        if config.pos_embed == "sincos":
            self.register_buffer("pos_embed", config_pos_embed(config, config.grid_size), persistent=False)
        self.blocks = nn.ModuleList(
            MMDiTBlock(
                d, config.num_heads, config.mlp_ratio, config.qk_norm, context_pre_only=i == config.depth - 1
            )
            for i in range(config.depth)
        )
        self.final_layer = FinalLayer(d, math.prod(config.patch_size), config.in_channels)
        self.gradient_checkpointing = config.gradient_checkpointing
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform linears, N(0, 0.02) time MLP, zeroed modulations (both streams) and output."""
        zeroed = [self.final_layer.modulation, self.final_layer.linear]
        zeroed += [m for b in self.blocks for m in (b.x_modulation, b.c_modulation)]
        init_adaln_zero(self, zeroed)
        if self.w_embedder is not None:
            self.w_embedder.zero_output()

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        control: list[Tensor] | None = None,
        w: Tensor | None = None,
    ) -> Tensor:
        """``x``: ``(B, C, *spatial)``, ``t``: ``(B,)`` in [0, 1] -> ``(B, C, *spatial)``.

        ``control``: ControlNet residuals, ``control[i]`` ``(B, N, hidden_size)`` added to the image tokens
        after block ``i`` (see the module docstring). ``w``: ``(B,)`` guidance scales (only with
        ``guidance_embed``).
        """
        check_mmdit_inputs(self.config, x, t, context, context_mask, pooled)
        check_guidance_input(w, self.w_embedder, x.shape[0], "MMDiT")
        if control is not None and len(control) > self.config.depth:
            raise ValueError(
                f"control: got {len(control)} residuals for an MMDiT of depth {self.config.depth}"
            )
        grid = self.x_embedder.grid_size(x.shape[2:])
        h = self.x_embedder(x)
        rope = None
        if self.config.pos_embed == "sincos":
            h = h + self._sincos(grid, h)
        else:
            rope = self.rope(grid_positions(grid, device=x.device))
        guidance = self.w_embedder(w) if self.w_embedder is not None else None
        c = mmdit_conditioning(self.t_embedder, self.pooled_embedder, t, pooled, guidance)
        ctx = self.context_embedder(context) if context is not None else None
        mask = joint_attention_mask(context_mask, h) if ctx is not None else None
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h, ctx = checkpoint(block, h, ctx, c, mask, rope, use_reentrant=False)
            else:
                h, ctx = block(h, ctx, c, mask, rope)
            if control is not None and i < len(control):
                h = h + control[i]
        h = self.final_layer(h, c)
        return unpatchify(h, grid, self.config.patch_size, self.config.in_channels)

    def _sincos(self, grid: tuple[int, ...], like: Tensor) -> Tensor:
        if grid == self.config.grid_size:
            return self.pos_embed.to(like.dtype)
        return config_pos_embed(self.config, grid, like.device).to(like.dtype)


def mmdit_conditioning(
    t_embedder: nn.Module,
    pooled_embedder: nn.Module | None,
    t: Tensor,
    pooled: Tensor | None,
    guidance: Tensor | None = None,
) -> Tensor:
    """SD3's conditioning vector ``SiLU(timestep embedding + MLP(pooled) [+ guidance])`` ``(B, D)``
    (``pooled=None``: time only; ``guidance``: an already embedded guidance scale ``(B, D)``, FLUX-style)."""
    c = t_embedder(t)
    if pooled is not None and pooled_embedder is not None:
        c = c + pooled_embedder(pooled.to(c.dtype))
    if guidance is not None:
        c = c + guidance.to(c.dtype)
    return F.silu(c)


def joint_attention_mask(context_mask: Tensor | None, image_tokens: Tensor) -> Tensor | None:
    """Key mask ``(B, M + N)`` over ``[context; image]`` from ``context_mask`` ``(B, M)`` (image keys always on)."""
    if context_mask is None:
        return None
    return torch.cat([context_mask, context_mask.new_ones(image_tokens.shape[:2])], dim=1)


def check_mmdit_inputs(
    cfg: MMDiTConfig,
    x: Tensor,
    t: Tensor,
    context: Tensor | None,
    context_mask: Tensor | None,
    pooled: Tensor | None,
) -> None:
    """Raise a ``ValueError`` naming the argument when an input does not fit an MMDiT of config ``cfg``."""
    b = x.shape[0]
    if x.ndim != 2 + len(cfg.input_size) or x.shape[1] != cfg.in_channels:
        raise ValueError(
            f"x: expected (B, {cfg.in_channels}, <{len(cfg.input_size)} spatial sizes>), got {tuple(x.shape)}"
        )
    if t.shape != (b,):
        raise ValueError(f"t: expected shape ({b},) matching the batch of x, got {tuple(t.shape)}")
    if context is not None and (
        context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.context_dim
    ):
        raise ValueError(f"context: expected ({b}, M, {cfg.context_dim}), got {tuple(context.shape)}")
    if context_mask is not None:
        if context is None:
            raise ValueError("context_mask: given without a context")
        if context_mask.dtype != torch.bool or context_mask.shape != context.shape[:2]:
            raise ValueError(
                f"context_mask: expected bool {tuple(context.shape[:2])}, "
                f"got {context_mask.dtype} {tuple(context_mask.shape)}"
            )
    if pooled is not None and (cfg.pooled_dim == 0 or pooled.shape != (b, cfg.pooled_dim)):
        raise ValueError(
            f"pooled: expected ({b}, {cfg.pooled_dim}) with pooled_dim > 0, got {tuple(pooled.shape)}"
        )


def mmdit_config(depth: int, **overrides: Any) -> MMDiTConfig:
    """SD3's scaling rule (Esser et al. 2024, Sec. 5.3): width ``64 * depth``, ``depth`` heads.

    ``depth=24`` is SD3-medium (2B parameters); ``depth=38`` the 8B model.
    """
    if depth < 1:
        raise ValueError(f"depth: expected >= 1, got {depth}")
    return MMDiTConfig(**{"depth": depth, "hidden_size": 64 * depth, "num_heads": depth, **overrides})
