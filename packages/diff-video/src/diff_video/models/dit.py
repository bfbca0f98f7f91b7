"""The spacetime-patch DiT: DiT's adaLN-Zero blocks (:mod:`diffcore.nn.dit`) over the tokens of a video.

A clip ``(B, C, T, H, W)`` is cut into spacetime patches ``(pt, ph, pw)`` by a 3D patch embedding (Sora's
"spacetime patches"; ``pt = 1`` keeps one token-frame per frame). The tokens are attended in one of two forms
(``VideoDiTConfig.attention``):

- ``"full"``: every block attends over all ``T' H' W'`` spacetime tokens (Open-Sora 2.0, Sora);
- ``"factorised"``: blocks alternate between spatial attention (within each token-frame, ``H' W'`` tokens) and
  temporal attention (along each spatial position, ``T'`` tokens): Latte's variant 1 (Ma et al. 2024, Sec. 3.2,
  Fig. 2a) and Open-Sora 1.x's ST-DiT.

Positions enter twice. A fixed 3D sin-cos embedding of each token's absolute ``(t, h, w)`` is added to the patch
tokens (``VideoDiTConfig.pos_embed = "sincos"``, computed for the input's grid; Latte and Open-Sora's ST-DiT add
absolute spatial and temporal embeddings too), and 3D rotary embeddings (axial RoPE over ``(t, h, w)``,
:class:`diffcore.nn.RotaryEmbedding`; spatial blocks use the ``(h, w)`` part, temporal blocks the ``t`` part, which is
the same rotation restricted to the tokens they see) give attention the relative offsets; queries/keys are
RMS-normalised per head (QK-norm). One model runs at any number of frames and any resolution divisible by the patch.

RoPE alone is not enough: it only tells attention the *offset* between two tokens, so a network with RoPE and no
absolute embedding maps a clip whose frames are all the same to an output whose frames are all the same (and a
spatially constant input to a spatially constant output): it cannot tell the first frame from the last, nor the
left of the frame from the right, except through differences in the content (factorised attention exactly; full
attention up to weak boundary effects). A caption's direction says where the object is at the first and at the last
frame (moving-shapes clips start on the side opposite their direction), which such a model cannot express from
noise. ``pos_embed = "none"`` keeps that RoPE-only layout for comparison. (Whether this alone explains the
direction adherence at chance of the first runs is not yet shown: see the package README.)

Conditioning: the time ``t`` ``(B,)`` in [0, 1] (0 = data, 1 = noise), class labels ``y`` ``(B,)`` and/or text
tokens ``context`` ``(B, M, context_dim)`` (cross-attention after each self-attention, PixArt-alpha's layout;
``pooled`` ``(B, context_dim)`` is added to the time embedding). With ``cond_tokens`` (the default) the class /
pooled caption is also embedded and added to every patch token. Added only in front of the modulation's SiLU, next
to a time embedding many times longer, the label is a signal the model learns to do without: near ``t = 1``, the
only times where ``x_t`` does not yet say which motion a clip has, such a model predicts the mean clip of all
labels, so its samples pick a direction whatever the label (even when it overfits one clip per direction; the
package README, "Measured", and ``tests/test_direction.py``). **Frame conditioning** (image-to-video,
continuation; Open-Sora 1.2's masking): ``frame_mask`` ``(B, T)`` marks frames given clean; their token-frames
are modulated with ``t = 0`` while the others use the sample's ``t``, so the adaLN modulation is per token-frame.
The velocity the model predicts at known frames carries no meaning; the objective leaves them out of its loss
and the sampler (:class:`diff_video.pipeline.FrameConditioned`) holds them fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffcore.nn import CrossAttention, DiTBlock, FinalLayer, PatchEmbed, RotaryEmbedding, TimestepEmbedder
from diffcore.nn.attention import Rope
from diffcore.nn.dit import init_adaln_zero, modulate, patch_geometry
from diffcore.nn.embeddings import LabelEmbedder, grid_positions, sincos_pos_embed, unpatchify
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ATTENTIONS", "POS_EMBEDS", "VideoDiT", "VideoDiTBlock", "VideoDiTConfig", "video_dit_config"]

ATTENTIONS = ("full", "factorised")
POS_EMBEDS = ("sincos", "none")


@dataclass
class VideoDiTConfig:
    """Hyper-parameters of :class:`VideoDiT`.

    ``input_size`` is the ``(T, H, W)`` the model is built for (any size divisible by ``patch_size`` runs);
    ``num_classes = 0`` and ``context_dim = 0`` make an unconditional model; ``attention`` is ``"full"`` or
    ``"factorised"`` (then ``depth`` counts spatial and temporal blocks, alternating, starting spatial);
    ``pos_embed`` is ``"sincos"`` (a fixed absolute ``(t, h, w)`` embedding added to the tokens, besides RoPE) or
    ``"none"`` (RoPE only: blind to absolute frame and position, see the module docstring); ``cond_tokens`` adds
    an embedding of the class / pooled text to every patch token as well as to the modulation (the default; see
    the module docstring; ``False`` is the adaLN-only layout).
    """

    input_size: tuple[int, int, int] = (16, 32, 32)
    patch_size: tuple[int, int, int] = (1, 4, 4)
    in_channels: int = 3
    hidden_size: int = 256
    depth: int = 8
    num_heads: int = 4
    mlp_ratio: float = 4.0
    attention: str = "factorised"
    num_classes: int = 0
    context_dim: int = 0
    qk_norm: bool = True
    rope_theta: float = 10000.0
    pos_embed: str = "sincos"
    cond_tokens: bool = True
    gradient_checkpointing: bool = False

    older_file_defaults: ClassVar[dict[str, object]] = {"pos_embed": "none", "cond_tokens": False}
    """What folders saved before ``pos_embed`` and ``cond_tokens`` existed were built with."""

    def __post_init__(self) -> None:
        size, patch = patch_geometry(self.input_size, self.patch_size)
        if len(size) != 3:
            raise ValueError(f"input_size: expected (T, H, W), got {size}")
        self.input_size, self.patch_size = size, patch  # type: ignore[assignment]
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed: expected one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads: {self.num_heads} must divide hidden_size {self.hidden_size}")
        head = self.hidden_size // self.num_heads
        if head % 2 or head < 6:
            raise ValueError(
                f"hidden_size / num_heads: the head width {head} must be even and >= 6 (3D RoPE rotates pairs "
                "over three axes)"
            )
        if self.depth < 1 or (self.attention == "factorised" and self.depth % 2):
            raise ValueError(
                f"depth: expected >= 1, and an even number for factorised attention (spatial and temporal "
                f"blocks alternate), got {self.depth}"
            )
        if self.num_classes < 0 or self.context_dim < 0:
            raise ValueError(
                f"num_classes, context_dim: expected >= 0, got {self.num_classes}, {self.context_dim}"
            )


class VideoDiTBlock(DiTBlock):
    """DiT's adaLN-Zero block (:class:`diffcore.nn.DiTBlock`: same parameters and equations) run on a token-frame
    layout ``(B, T', S, D)``, with the modulation given per token-frame and attention over ``"full"`` spacetime,
    ``"spatial"`` (within a frame) or ``"temporal"`` (along time) token sets; optional cross-attention to text.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, qk_norm: bool, kind: str, context_dim: int
    ) -> None:
        super().__init__(hidden_size, num_heads, mlp_ratio, qk_norm)
        self.kind = kind
        self.cross = None
        if context_dim:
            self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6)
            self.cross = CrossAttention(hidden_size, context_dim, num_heads, qk_norm=qk_norm)

    def _attend(self, h: Tensor, rope: Rope) -> Tensor:
        b, t, s, d = h.shape
        if self.kind == "full":
            return self.attn(h.reshape(b, t * s, d), rope=rope).view(b, t, s, d)
        if self.kind == "spatial":
            return self.attn(h.reshape(b * t, s, d), rope=rope).view(b, t, s, d)
        out = self.attn(h.transpose(1, 2).reshape(b * s, t, d), rope=rope)
        return out.view(b, s, t, d).transpose(1, 2)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        c: Tensor,
        rope: Rope,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """``x``: ``(B, T', S, D)``; ``c``: ``(B, T', D)`` after SiLU; ``rope``: the (cos, sin) of this block's
        token set; ``context``: ``(B, M, context_dim)`` -> ``(B, T', S, D)``."""
        mod = self.modulation(c)[:, :, None]  # (B, T', 1, 6D): per token-frame shift, scale, gate
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        x = x + gate_msa * self._attend(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        if self.cross is not None and context is not None:
            b, t, s, d = x.shape
            q = self.norm_cross(x).reshape(b, t * s, d)
            x = x + self.cross(q, context, context_mask).view(b, t, s, d)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class VideoDiT(PretrainedModel):
    """Spacetime-patch DiT (see the module docstring).

    ``forward(x, t, y=None, context=None, context_mask=None, pooled=None, frame_mask=None)``: ``x``
    ``(B, C, T, H, W)``, ``t`` ``(B,)`` in [0, 1] -> ``(B, C, T, H, W)`` (what it predicts is the pipeline's
    ``prediction``; diff-video trains the rectified-flow velocity ``dx_t/dt``).
    """

    config_class = VideoDiTConfig
    # The blocks that each become one FSDP unit (TrainConfig.sharding="fsdp2"; the Hugging Face name).
    _no_split_modules: ClassVar[list[str]] = ["VideoDiTBlock"]
    config: VideoDiTConfig

    def __init__(self, config: VideoDiTConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.in_channels, d, config.patch_size, ndim=3)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(config.num_classes, d) if config.num_classes else None
        self.pooled_embedder = None
        if config.context_dim:
            self.pooled_embedder = nn.Sequential(nn.Linear(config.context_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.y_tokens = self.pooled_tokens = None
        if config.cond_tokens and config.num_classes:
            self.y_tokens = nn.Embedding(config.num_classes + 1, d)
        if config.cond_tokens and config.context_dim:
            self.pooled_tokens = nn.Linear(config.context_dim, d)
        self.rope = RotaryEmbedding(d // config.num_heads, 3, config.rope_theta)
        kinds = ["full"] * config.depth
        if config.attention == "factorised":
            kinds = ["spatial", "temporal"] * (config.depth // 2)
        self.blocks = nn.ModuleList(
            VideoDiTBlock(d, config.num_heads, config.mlp_ratio, config.qk_norm, kind, config.context_dim)
            for kind in kinds
        )
        self.final_layer = FinalLayer(d, math.prod(config.patch_size), config.in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation (adaLN-Zero; :func:`diffcore.nn.dit.init_adaln_zero`), and the cross-attention
        outputs at zero (PixArt-alpha), so a fresh model outputs exactly zero."""
        zeroed = [b.modulation for b in self.blocks] + [self.final_layer.modulation, self.final_layer.linear]
        zeroed += [b.cross.proj for b in self.blocks if b.cross is not None]
        init_adaln_zero(self, zeroed)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        if self.y_tokens is not None:  # as large as the patch tokens, so the label is not lost among them
            nn.init.normal_(self.y_tokens.weight, std=1.0)

    @property
    def null_class(self) -> int:
        """The label meaning "no class" (``num_classes``), for classifier-free guidance."""
        if self.y_embedder is None:
            raise ValueError("null_class: this VideoDiT has no classes (num_classes = 0)")
        return self.y_embedder.null_class

    def token_frames(self, frame_mask: Tensor) -> Tensor:
        """``(B, T)`` known-frame mask -> ``(B, T')`` per token-frame: known when all its ``pt`` frames are."""
        pt = self.config.patch_size[0]
        return frame_mask.view(frame_mask.shape[0], -1, pt).all(-1)

    def _ropes(self, grid: tuple[int, int, int], device: torch.device) -> dict[str, Rope]:
        t, h, w = grid
        full = self.rope(grid_positions(grid, device))
        spatial = self.rope(grid_positions((1, h, w), device))
        temporal = self.rope(grid_positions((t, 1, 1), device))
        return {"full": full, "spatial": spatial, "temporal": temporal}

    def _condition(
        self, t: Tensor, y: Tensor | None, pooled: Tensor | None, frame_mask: Tensor | None, frames: int
    ) -> Tensor:
        """``(B, T', D)`` conditioning per token-frame (before SiLU)."""
        b = t.shape[0]
        t_frames = t[:, None].expand(b, frames)
        if frame_mask is not None:
            t_frames = torch.where(self.token_frames(frame_mask), torch.zeros_like(t_frames), t_frames)
        c = self.t_embedder(t_frames.reshape(-1)).view(b, frames, -1)
        extra = torch.zeros_like(c[:, 0])
        if self.y_embedder is not None:
            if y is None:
                y = torch.full((b,), self.y_embedder.null_class, device=t.device, dtype=torch.long)
            extra = extra + self.y_embedder(y)
        if self.pooled_embedder is not None and pooled is not None:
            extra = extra + self.pooled_embedder(pooled.to(c.dtype))
        return c + extra[:, None]

    def _condition_tokens(self, h: Tensor, y: Tensor | None, pooled: Tensor | None) -> Tensor:
        """``h`` ``(B, N, D)`` patch tokens plus the class / pooled-text token embedding (``cond_tokens``)."""
        if self.y_tokens is not None:
            if y is None:
                y = torch.full((h.shape[0],), self.config.num_classes, device=h.device, dtype=torch.long)
            h = h + self.y_tokens(y)[:, None].to(h.dtype)
        if self.pooled_tokens is not None and pooled is not None:
            h = h + self.pooled_tokens(pooled.to(h.dtype))[:, None]
        return h

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
        frame_mask: Tensor | None = None,
    ) -> Tensor:
        """``x``: ``(B, C, T, H, W)``; ``t``: ``(B,)`` in [0, 1]; ``y``: ``(B,)`` labels; ``context``:
        ``(B, M, context_dim)`` text tokens (``context_mask`` ``(B, M)`` True = a real token); ``pooled``:
        ``(B, context_dim)``; ``frame_mask``: ``(B, T)`` True at frames given clean -> ``(B, C, T, H, W)``."""
        self._check(x, t, y, context, frame_mask)
        grid = self.x_embedder.grid_size(x.shape[2:])
        b, d = x.shape[0], self.config.hidden_size
        h = self.x_embedder(x)
        if self.config.pos_embed == "sincos":
            h = h + sincos_pos_embed(d, grid, device=x.device)[None].to(h.dtype)
        h = self._condition_tokens(h, y, pooled).view(b, grid[0], grid[1] * grid[2], d)
        c = F.silu(self._condition(t, y, pooled, frame_mask, grid[0]))
        ropes = self._ropes(grid, x.device)  # type: ignore[arg-type]
        for block in self.blocks:
            args = (h, c, ropes[block.kind], context, context_mask)
            if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, *args, use_reentrant=False)
            else:
                h = block(*args)
        shift, scale = self.final_layer.modulation(c)[:, :, None].chunk(2, dim=-1)
        out = self.final_layer.linear(modulate(self.final_layer.norm(h), shift, scale))
        return unpatchify(
            out.reshape(b, -1, out.shape[-1]), grid, self.config.patch_size, self.config.in_channels
        )

    def _check(
        self, x: Tensor, t: Tensor, y: Tensor | None, context: Tensor | None, frame_mask: Tensor | None
    ) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x: expected (B, {cfg.in_channels}, T, H, W), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected shape ({x.shape[0]},), got {tuple(t.shape)}")
        if y is not None and self.y_embedder is None:
            raise ValueError("y: this VideoDiT has no classes (num_classes = 0); pass y=None")
        if context is not None and not cfg.context_dim:
            raise ValueError("context: this VideoDiT takes no text (context_dim = 0); pass context=None")
        if frame_mask is not None and frame_mask.shape != (x.shape[0], x.shape[2]):
            raise ValueError(
                f"frame_mask: expected ({x.shape[0]}, {x.shape[2]}) (batch, frames), got {tuple(frame_mask.shape)}"
            )


_SIZES = {
    "S": {"depth": 12, "hidden_size": 384, "num_heads": 6},
    "B": {"depth": 12, "hidden_size": 768, "num_heads": 12},
    "L": {"depth": 24, "hidden_size": 1024, "num_heads": 16},
    "XL": {"depth": 28, "hidden_size": 1152, "num_heads": 16},
}


def video_dit_config(size: str, **overrides: object) -> VideoDiTConfig:
    """Latte's model sizes (Ma et al. 2024, Table 1, DiT's: S, B, L = depth 24, width 1024, 16 heads, XL), with
    field overrides."""
    if size not in _SIZES:
        raise ValueError(f"size: expected one of {sorted(_SIZES)}, got {size!r}")
    return VideoDiTConfig(**{**_SIZES[size], **overrides})  # type: ignore[arg-type]
