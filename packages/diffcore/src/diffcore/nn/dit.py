"""DiT: Diffusion Transformer with adaLN-Zero blocks (Peebles & Xie 2023, "Scalable Diffusion Models
with Transformers", Sec. 3.2).

Contract: ``DiT(x, t, y=None, control=None, w=None)`` with ``x`` ``(B, C, *spatial)`` (1, 2 or 3 spatial
axes: sequence, image, spacetime volume), ``t`` ``(B,)`` in [0, 1] (0 = data, 1 = noise) and ``y``
``(B,)`` int64 class labels; returns a tensor shaped like ``x`` (``2C`` channels when
``learn_sigma``: the first ``C`` are the prediction, the last ``C`` the variance interpolation of
Nichol & Dhariwal 2021). ``y=None`` (or label ``num_classes``) is the null class for classifier-free
guidance; label dropout during training is the caller's job (:func:`diffcore.nn.embeddings.drop_labels`).
With ``guidance_embed`` on, ``w`` ``(B,)`` (a classifier-free guidance scale) is required and embedded like
``t`` (:class:`GuidanceEmbedder`): the guidance-scale conditioning of LCM (Luo et al. 2023, Sec. 4.2) and
FLUX's guidance-distilled models.

Every adaLN modulation and the final projection start at zero, so a fresh model outputs exactly zero
and each block starts as the identity ("adaLN-Zero", Sec. 3.2). The forward pass has no
data-dependent Python control flow and compiles with ``torch.compile(fullgraph=True)``.

This file is the model as the paper writes it. ``DiTConfig.fused_kernels`` builds the blocks and the final
layer in their fast form instead (:mod:`diffcore.nn.dit_fused`: the same parameters and state-dict keys,
the same math through :mod:`diffcore.kernels` on CUDA); where the kernels cannot run, the model runs the
plain forward of this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffcore.kernels import triton_runs_on
from diffcore.nn.attention import Attention, Rope
from diffcore.nn.embeddings import (
    LabelEmbedder,
    PatchEmbed,
    RotaryEmbedding,
    TimestepEmbedder,
    grid_positions,
    sincos_pos_embed,
    unpatchify,
)
from diffcore.pretrained import PretrainedModel

POS_EMBEDS = ("sincos", "rope")


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation ``x * (1 + scale) + shift`` (one ``addcmul``): ``x`` ``(B, N, D)``, ``shift`` and
    ``scale`` ``(B, 1, D)``."""
    return torch.addcmul(shift, x, scale + 1)


class Mlp(nn.Module):
    """Transformer feed-forward ``Linear -> GELU(tanh) -> Linear``: ``(B, N, D)`` -> ``(B, N, D)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``fc2(gelu_tanh(fc1(x)))`` on tokens ``x: (B, N, D)``."""
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (Peebles & Xie 2023, Sec. 3.2 and Fig. 3).

    ``x``: ``(B, N, D)`` tokens; ``c``: ``(B, D)`` conditioning already passed through SiLU; ``rope``: optional
    ``(cos, sin)``. The conditioning regresses a shift, scale and gate for each branch; each branch sees the
    modulated LayerNorm of ``x`` and adds its output back scaled by its gate (zero at initialisation).
    """

    attention_class: type[Attention] = Attention
    mlp_class: type[Mlp] = Mlp

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = self.attention_class(hidden_size, num_heads, qkv_bias=True, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = self.mlp_class(hidden_size, int(hidden_size * mlp_ratio))
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, x: Tensor, c: Tensor, rope: Rope | None = None) -> Tensor:
        """adaLN-Zero block (Peebles & Xie 2023, Fig. 3) on tokens ``x: (B, N, D)`` with conditioning
        ``c: (B, D)``: ``x + gate_msa * attn(modulate(norm1(x)))``, then
        ``x + gate_mlp * mlp(modulate(norm2(x)))``; ``rope`` rotates queries and keys."""
        mod = self.modulation(c)[:, None]  # (B, 1, 6D): per-sample shift, scale, gate of both branches
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope=rope)
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map to ``prod(patch) * out_channels`` per token.

    ``x``: ``(B, N, D)``; ``c``: ``(B, D)`` after SiLU -> ``(B, N, prod(patch) * out_channels)``.
    """

    def __init__(self, hidden_size: int, patch_volume: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_volume * out_channels)
        self.modulation = nn.Linear(hidden_size, 2 * hidden_size)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Modulated LayerNorm and the linear map of tokens ``x: (B, N, D)`` to patch values
        ``(B, N, p * p * C_out)``."""
        shift, scale = self.modulation(c)[:, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def dit_layers(fused_kernels: bool) -> tuple[type[DiTBlock], type[FinalLayer]]:
    """The block and final-layer classes of a DiT: the plain ones above, or with ``fused_kernels`` their fused
    forms (:mod:`diffcore.nn.dit_fused`; subclasses with the same parameters)."""
    if not fused_kernels:
        return DiTBlock, FinalLayer
    from diffcore.nn.dit_fused import FusedDiTBlock, FusedFinalLayer  # (that module imports this one)

    return FusedDiTBlock, FusedFinalLayer


def patch_geometry(
    input_size: Sequence[int], patch_size: Sequence[int] | int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validated ``(input_size, patch_size)`` tuples for 1-3 spatial axes (one ``int`` patch serves every
    axis; JSON lists become tuples); every input size must be divisible by its patch size."""
    sizes = tuple(int(s) for s in input_size)
    ndim = len(sizes)
    if ndim not in (1, 2, 3):
        raise ValueError(f"input_size: expected 1, 2 or 3 spatial sizes, got {sizes}")
    patch = (int(patch_size),) * ndim if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(patch) != ndim or any(p < 1 for p in patch):
        raise ValueError(f"patch_size: expected {ndim} positive sizes, got {patch}")
    if any(s % p for s, p in zip(sizes, patch)):
        raise ValueError(f"input_size: {sizes} must be divisible by patch_size {patch}")
    return sizes, patch


def patch_grid(input_size: Sequence[int], patch_size: Sequence[int]) -> tuple[int, ...]:
    """Tokens per axis after patchifying ``input_size`` with ``patch_size``."""
    return tuple(s // p for s, p in zip(input_size, patch_size))


def check_attention_layout(hidden_size: int, num_heads: int, pos_embed: str) -> None:
    """``num_heads`` must divide ``hidden_size``; ``pos_embed`` must be one of :data:`POS_EMBEDS`."""
    if hidden_size % num_heads:
        raise ValueError(f"num_heads: {num_heads} must divide hidden_size {hidden_size}")
    if pos_embed not in POS_EMBEDS:
        raise ValueError(f"pos_embed: expected one of {POS_EMBEDS}, got {pos_embed!r}")


def check_pos_layout(axes: str, offset: Sequence[float] | float, ndim: int) -> tuple[float, ...] | float:
    """Validate the sin-cos table's layout (``pos_embed_axes``, ``pos_embed_offset``); returns the offset with
    JSON lists as tuples."""
    if axes not in ("ij", "xy"):
        raise ValueError(f"pos_embed_axes: expected 'ij' or 'xy', got {axes!r}")
    if isinstance(offset, (int, float)):
        return float(offset)
    offsets = tuple(float(o) for o in offset)
    if len(offsets) != ndim:
        raise ValueError(f"pos_embed_offset: expected one number or {ndim} (one per axis), got {offsets}")
    return offsets


def config_pos_embed(config: Any, grid: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """The fixed sin-cos table ``(1, prod(grid), hidden_size)`` of a DiT / MMDiT ``config`` at ``grid``
    (its ``pos_embed_axes``, ``pos_embed_offset`` and ``pos_embed_step``)."""
    return sincos_pos_embed(
        config.hidden_size,
        grid,
        device,
        axes=config.pos_embed_axes,
        offset=config.pos_embed_offset,
        step=config.pos_embed_step,
    )[None]


def check_guidance_max(guidance_max: float) -> None:
    """``guidance_max`` (the largest guidance scale the embedding is laid out for) must be positive."""
    if not guidance_max > 0:
        raise ValueError(f"guidance_max: expected a positive guidance scale, got {guidance_max}")


class GuidanceEmbedder(nn.Module):
    """Guidance-scale conditioning: ``w`` ``(B,)`` -> ``(B, hidden_size)``, added to the conditioning vector.

    LCM (Luo et al. 2023, Sec. 4.2) feeds the classifier-free guidance scale ``w`` to the student so that one
    network serves every scale without a second (unconditional) forward; FLUX's guidance-distilled models
    do the same. ``w`` goes through the same sinusoidal features and MLP as the time
    (:class:`~diffcore.nn.embeddings.TimestepEmbedder`) after division by ``guidance_max``, so scales in
    ``[0, guidance_max]`` use the frequencies that ``t`` in [0, 1] uses. The MLP's output layer starts at zero:
    a student built from a teacher without this input starts as exactly the teacher, at every ``w``.
    """

    def __init__(self, hidden_size: int, guidance_max: float) -> None:
        super().__init__()
        check_guidance_max(guidance_max)
        self.guidance_max = float(guidance_max)
        self.embedder = TimestepEmbedder(hidden_size)

    def zero_output(self) -> None:
        """Zero the last layer, so the embedding adds nothing until trained."""
        nn.init.zeros_(self.embedder.mlp[2].weight)
        nn.init.zeros_(self.embedder.mlp[2].bias)

    def forward(self, w: Tensor) -> Tensor:
        """``w``: ``(B,)`` guidance scales -> ``(B, hidden_size)``."""
        return self.embedder(w.float() / self.guidance_max)


def check_guidance_input(w: Tensor | None, embedder: GuidanceEmbedder | None, batch: int, owner: str) -> None:
    """Raise a ``ValueError`` unless ``w`` fits: a ``(batch,)`` tensor exactly when ``owner`` embeds guidance."""
    if embedder is None:
        if w is not None:
            raise ValueError(
                f"w: this {owner} takes no guidance scale (guidance_embed = False in its config); pass w=None"
            )
        return
    if w is None:
        raise ValueError(
            f"w: this {owner} embeds the guidance scale (guidance_embed = True); pass w of shape ({batch},)"
        )
    if not isinstance(w, Tensor) or w.shape != (batch,) or w.is_complex() or w.dtype == torch.bool:
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"w: expected a real tensor of shape ({batch},) of guidance scales, got {shape}")


@dataclass
class DiTConfig:
    """DiT hyper-parameters. ``input_size``/``patch_size`` have one entry per spatial axis (1-3).

    ``patch_size`` may be given as one int for every axis; lists (from JSON) become tuples.
    ``num_classes = 0`` makes an unconditional model. ``pos_embed`` is ``"sincos"`` (fixed, as in
    DiT) or ``"rope"`` (axial rotary embedding in every attention layer). ``guidance_embed`` adds a
    guidance-scale input ``w`` (see :class:`GuidanceEmbedder`), scaled by ``1 / guidance_max``.
    ``time_freq_shift``: the time features' frequency shift (:func:`~diffcore.nn.embeddings.timestep_embedding`;
    1 in diffusers' DiT). ``pos_embed_axes`` / ``pos_embed_offset`` / ``pos_embed_step``: the sin-cos table's
    layout (:func:`~diffcore.nn.embeddings.sincos_pos_embed`; ``"xy"`` in diffusers' checkpoints).
    ``fused_kernels``: build the blocks and final layer in their fused form (:mod:`diffcore.nn.dit_fused`,
    same parameters and math), which on CUDA with Triton runs each adaLN step (gated residual + LayerNorm +
    modulate) as one Triton kernel (:mod:`diffcore.kernels.adaln`), self-attention without RoPE or QK-norm
    straight from the q/k/v projection in Triton (:mod:`diffcore.kernels.attention`) and, in bf16/fp16, the
    MLP's forward GELU in cuBLASLt's matmul epilogue (:mod:`diffcore.kernels.mlp`). On the CPU, or without
    Triton, the plain blocks run. Turn it off for double backward or forward-mode AD, which the fused
    kernels do not support.
    """

    input_size: tuple[int, ...] = (32, 32)
    patch_size: tuple[int, ...] | int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    learn_sigma: bool = False
    qk_norm: bool = False
    pos_embed: str = "sincos"
    rope_theta: float = 10000.0
    gradient_checkpointing: bool = False
    guidance_embed: bool = False
    guidance_max: float = 8.0
    fused_kernels: bool = True
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
        if self.num_classes < 0 or self.depth < 1:
            raise ValueError(
                f"num_classes >= 0 and depth >= 1 expected, got {self.num_classes}, {self.depth}"
            )

    @property
    def out_channels(self) -> int:
        """Output channels: ``2 * in_channels`` with a learned variance, else ``in_channels``."""
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def grid_size(self) -> tuple[int, ...]:
        """Patch-grid size of the configured input."""
        return patch_grid(self.input_size, self.patch_size)


def init_adaln_zero(model: nn.Module, zeroed: list[nn.Linear]) -> None:
    """DiT's initialisation (Peebles & Xie 2023, Sec. 3.2) of a model with ``x_embedder`` (patches) and
    ``t_embedder``: Xavier-uniform linears and patch projection, N(0, 0.02) time MLP, and the ``zeroed``
    layers (adaLN modulations, output projection) at exactly zero, so each block starts as the identity."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    w = model.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.x_embedder.proj.bias)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    for layer in zeroed:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


class DiT(PretrainedModel):
    """Diffusion Transformer (Peebles & Xie 2023) over 1D, 2D or 3D inputs.

    ``control``: optional list of ``K <= depth`` residuals, each ``(B, N, hidden_size)`` in token
    layout; ``control[i]`` is added to the tokens after block ``i`` for ``i < K``. A ControlNet
    (a trainable copy of the first ``K`` blocks with zero-initialised outputs) produces them.
    ``w``: ``(B,)`` guidance scales, required when ``config.guidance_embed`` and refused otherwise.
    """

    config_class = DiTConfig
    # The blocks that each become one FSDP unit (TrainConfig.sharding="fsdp2"; the Hugging Face name).
    _no_split_modules: ClassVar[list[str]] = ["DiTBlock"]
    config: DiTConfig
    pos_embed: Tensor

    def __init__(self, config: DiTConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.in_channels, d, config.patch_size, ndim=len(config.input_size))
        self.t_embedder = TimestepEmbedder(d, freq_shift=config.time_freq_shift)
        self.y_embedder = LabelEmbedder(config.num_classes, d) if config.num_classes > 0 else None
        self.w_embedder = GuidanceEmbedder(d, config.guidance_max) if config.guidance_embed else None
        self.rope = RotaryEmbedding(d // config.num_heads, len(config.input_size), config.rope_theta)
        if config.pos_embed == "sincos":
            self.register_buffer("pos_embed", config_pos_embed(config, config.grid_size), persistent=False)
        block, final_layer = dit_layers(config.fused_kernels)
        self.blocks = nn.ModuleList(
            block(d, config.num_heads, config.mlp_ratio, config.qk_norm) for _ in range(config.depth)
        )
        self.final_layer = final_layer(d, math.prod(config.patch_size), config.out_channels)
        self.gradient_checkpointing = config.gradient_checkpointing
        self._fused_forward: Callable[..., Tensor] | None = None  # what chains the fused layers
        if config.fused_kernels:
            from diffcore.nn.dit_fused import forward_fused

            self._fused_forward = forward_fused
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linears, N(0, 0.02) embeddings, zeroed adaLN and output."""
        zeroed = [b.modulation for b in self.blocks] + [self.final_layer.modulation, self.final_layer.linear]
        init_adaln_zero(self, zeroed)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        if self.w_embedder is not None:
            self.w_embedder.zero_output()

    @property
    def null_class(self) -> int:
        """The label index meaning "no class" (``num_classes``), for classifier-free guidance."""
        if self.y_embedder is None:
            raise ValueError("null_class: this DiT is unconditional (num_classes = 0)")
        return self.y_embedder.null_class

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        control: list[Tensor] | None = None,
        w: Tensor | None = None,
    ) -> Tensor:
        """``x``: ``(B, C, *spatial)``, ``t``: ``(B,)`` in [0, 1], ``w``: ``(B,)`` guidance scales (only with
        ``guidance_embed``) -> ``(B, out_channels, *spatial)``."""
        self._check_inputs(x, t, y, control)
        check_guidance_input(w, self.w_embedder, x.shape[0], "DiT")
        grid = self.x_embedder.grid_size(x.shape[2:])
        h = self.x_embedder(x)
        rope = None
        if self.config.pos_embed == "sincos":
            h = h + self._sincos(grid, h)
        else:
            rope = self.rope(grid_positions(grid, device=x.device))
        c = self._condition(t, y, x.shape[0])
        if self.w_embedder is not None:
            c = c + self.w_embedder(w).to(c.dtype)
        c = F.silu(c)
        if self._fused_forward is not None and triton_runs_on(h):  # the same math through the kernels
            h = self._fused_forward(self, h, c, rope, control)
        else:
            for i, block in enumerate(self.blocks):
                if self.checkpointing:
                    h = checkpoint(block, h, c, rope, use_reentrant=False)
                else:
                    h = block(h, c, rope)
                if control is not None and i < len(control):
                    h = h + control[i]
            h = self.final_layer(h, c)
        return unpatchify(h, grid, self.config.patch_size, self.config.out_channels)

    @property
    def checkpointing(self) -> bool:
        """Whether this forward recomputes each block in the backward (gradient checkpointing while training)."""
        return self.gradient_checkpointing and self.training and torch.is_grad_enabled()

    def _condition(self, t: Tensor, y: Tensor | None, batch: int) -> Tensor:
        c = self.t_embedder(t)
        if self.y_embedder is None:
            return c
        if y is None:
            y = torch.full((batch,), self.y_embedder.null_class, device=t.device, dtype=torch.long)
        return c + self.y_embedder(y)

    def _sincos(self, grid: tuple[int, ...], like: Tensor) -> Tensor:
        if grid == self.config.grid_size:
            return self.pos_embed.to(like.dtype)
        return config_pos_embed(self.config, grid, like.device).to(like.dtype)

    def _check_inputs(self, x: Tensor, t: Tensor, y: Tensor | None, control: list[Tensor] | None) -> None:
        cfg = self.config
        if x.ndim != 2 + len(cfg.input_size) or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"x: expected (B, {cfg.in_channels}, <{len(cfg.input_size)} spatial sizes>), "
                f"got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t: expected shape ({x.shape[0]},) matching the batch of x, got {tuple(t.shape)}"
            )
        if y is not None and self.y_embedder is None:
            raise ValueError("y: this DiT is unconditional (num_classes = 0); pass y=None")
        if y is not None and y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},) of class indices, got {tuple(y.shape)}")
        if control is not None and len(control) > cfg.depth:
            raise ValueError(f"control: got {len(control)} residuals for a DiT of depth {cfg.depth}")


_SIZES: dict[str, dict[str, Any]] = {
    "S": {"depth": 12, "hidden_size": 384, "num_heads": 6},
    "B": {"depth": 12, "hidden_size": 768, "num_heads": 12},
    "L": {"depth": 24, "hidden_size": 1024, "num_heads": 16},
    "XL": {"depth": 28, "hidden_size": 1152, "num_heads": 16},
}


def dit_config(size: str, patch_size: int, **overrides: Any) -> DiTConfig:
    """The paper's configuration ``DiT-{size}/{patch_size}`` (Table 1), with field overrides."""
    if size not in _SIZES:
        raise ValueError(f"size: expected one of {sorted(_SIZES)}, got {size!r}")
    return DiTConfig(**{**_SIZES[size], "patch_size": patch_size, **overrides})


def DiT_S_2(**kw: Any) -> DiT:
    """DiT-S/2 (Table 1 of Peebles & Xie 2023: depth 12, width 384, 6 heads, patch 2); ``kw`` overrides
    :class:`DiTConfig` fields."""
    return DiT(dit_config("S", 2, **kw))


def DiT_S_4(**kw: Any) -> DiT:
    """DiT-S/4 (depth 12, width 384, 6 heads, patch 4); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("S", 4, **kw))


def DiT_S_8(**kw: Any) -> DiT:
    """DiT-S/8 (depth 12, width 384, 6 heads, patch 8); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("S", 8, **kw))


def DiT_B_2(**kw: Any) -> DiT:
    """DiT-B/2 (depth 12, width 768, 12 heads, patch 2); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("B", 2, **kw))


def DiT_B_4(**kw: Any) -> DiT:
    """DiT-B/4 (depth 12, width 768, 12 heads, patch 4); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("B", 4, **kw))


def DiT_B_8(**kw: Any) -> DiT:
    """DiT-B/8 (depth 12, width 768, 12 heads, patch 8); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("B", 8, **kw))


def DiT_L_2(**kw: Any) -> DiT:
    """DiT-L/2 (depth 24, width 1024, 16 heads, patch 2); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("L", 2, **kw))


def DiT_L_4(**kw: Any) -> DiT:
    """DiT-L/4 (depth 24, width 1024, 16 heads, patch 4); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("L", 4, **kw))


def DiT_L_8(**kw: Any) -> DiT:
    """DiT-L/8 (depth 24, width 1024, 16 heads, patch 8); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("L", 8, **kw))


def DiT_XL_2(**kw: Any) -> DiT:
    """DiT-XL/2 (depth 28, width 1152, 16 heads, patch 2: the paper's best model); ``kw`` overrides
    :class:`DiTConfig` fields."""
    return DiT(dit_config("XL", 2, **kw))


def DiT_XL_4(**kw: Any) -> DiT:
    """DiT-XL/4 (depth 28, width 1152, 16 heads, patch 4); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("XL", 4, **kw))


def DiT_XL_8(**kw: Any) -> DiT:
    """DiT-XL/8 (depth 28, width 1152, 16 heads, patch 8); ``kw`` overrides :class:`DiTConfig` fields."""
    return DiT(dit_config("XL", 8, **kw))
