"""diffusers model folders <-> diffcore's DiT, MMDiT and U-Net, with no diffusers at run time.

A diffusers model folder (what ``ModelMixin.save_pretrained`` writes) is ``config.json`` (``_class_name`` and the
constructor's arguments) and ``diffusion_pytorch_model.safetensors`` (or shards listed in
``diffusion_pytorch_model.safetensors.index.json``). This module reads and writes that layout itself
(safetensors + JSON) for three classes:

=============================  ===================================  =========================================
diffusers class                diffcore model                       what differs, and how it is carried over
=============================  ===================================  =========================================
``DiTTransformer2DModel``      :class:`~diffcore.nn.dit.DiT`        time features ``i / (half - 1)``
                                                                    (``time_freq_shift = 1``), 2D table in
                                                                    ``(w, h)`` order (``pos_embed_axes="xy"``),
                                                                    the time/label embedder copied into every
                                                                    block (one copy here; the copies must agree)
``SD3Transformer2DModel``      :class:`~diffcore.nn.mmdit.MMDiT`    a centre crop of a larger table
                                                                    (``pos_embed_offset`` / ``pos_embed_step``),
                                                                    ``(scale, shift)`` order of the last
                                                                    modulations (halves swapped)
``UNet2DConditionModel``       :class:`~diffcore.nn.unet.UNet`      fused q/k/v (split into ``to_q/k/v``),
                                                                    1x1-convolution ``proj_in`` of SD 1.x
                                                                    (reshaped); the null class is the last row
=============================  ===================================  =========================================

The networks' inputs differ only in units: diffusers' ``timestep`` is ``1000 t`` with diffcore's ``t`` in [0, 1]
(0 = data), and a diffusers U-Net takes ``encoder_hidden_states`` where ours takes ``context``. Settings a
diffcore model cannot express (SD3.5's dual attention, an unconditional diffusers DiT, ...) are refused with
the setting named, never approximated::

    model = load_diffusers_model("sd15/unet")          # a diffcore UNet
    save_diffusers_model(model, "out/unet")            # UNet2DConditionModel.from_pretrained reads it
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from diffcore.io import read_json, write_json
from diffcore.nn.dit import DiT, DiTConfig
from diffcore.nn.embeddings import sincos_pos_embed
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.nn.unet import UNet, UNetConfig, heads_for_channels
from diffcore.pretrained import atomic_save_safetensors

__all__ = [
    "DIFFUSERS_CONFIG_NAME",
    "DIFFUSERS_WEIGHTS_NAME",
    "Rename",
    "config_from_diffusers",
    "diffusers_config_from",
    "diffusers_state_from",
    "load_diffusers_model",
    "model_from_diffusers",
    "read_diffusers_folder",
    "renames_for",
    "save_diffusers_model",
    "state_from_diffusers",
]

DIFFUSERS_CONFIG_NAME = "config.json"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
DIFFUSERS_FORMAT_VERSION = "0.42.0"
"""The diffusers release whose folders these converters are tested against (written as ``_diffusers_version``)."""


# ---------------------------------------------------------------------------------------------- renames


@dataclasses.dataclass(frozen=True)
class Rename:
    """One of our tensors and the diffusers tensors that hold it.

    ``op``: ``"same"`` (one name, one tensor), ``"split"`` (ours is the concatenation of ``theirs`` along the first
    axis: fused q/k/v), ``"swap"`` (ours is theirs with its two halves exchanged: ``(shift, scale)`` against
    ``(scale, shift)``), ``"copies"`` (every name in ``theirs`` holds the same tensor: DiT's per-block embedders).
    """

    ours: str
    theirs: tuple[str, ...]
    op: str = "same"


def _swap(w: Tensor) -> Tensor:
    a, b = w.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_diffusers_state(state: dict[str, Tensor], renames: Iterable[Rename]) -> dict[str, Tensor]:
    """Our state dict in diffusers' names (every tensor of ``state`` must be covered by ``renames``)."""
    out: dict[str, Tensor] = {}
    for r in renames:
        w = state[r.ours]
        if r.op == "split":
            out.update(zip(r.theirs, (c.clone() for c in w.chunk(len(r.theirs), dim=0)), strict=True))
        elif r.op == "copies":
            out.update({name: w.clone() for name in r.theirs})
        else:
            out[r.theirs[0]] = _swap(w) if r.op == "swap" else w
    return out


def from_diffusers_state(
    theirs: dict[str, Tensor], renames: Iterable[Rename], shapes: dict[str, torch.Size]
) -> dict[str, Tensor]:
    """diffusers' state dict in our names; ``shapes`` are our tensors' shapes (a 1x1 convolution becomes a linear
    map). Raises naming the first missing or left-over tensor."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for r in renames:
        missing = [n for n in r.theirs if n not in theirs]
        if missing:
            raise ValueError(f"weights: the diffusers state dict lacks {missing[0]!r} (for our {r.ours!r})")
        used.update(r.theirs)
        parts = [theirs[n] for n in r.theirs]
        if r.op == "split":
            w = torch.cat(parts, dim=0)
        elif r.op == "copies":
            w = parts[0]
            for name, other in zip(r.theirs[1:], parts[1:]):
                if not torch.equal(other, w):
                    raise ValueError(
                        f"weights: {name!r} differs from {r.theirs[0]!r}; diffcore's model has one "
                        f"{r.ours!r} shared by every block, this checkpoint has a different one per block"
                    )
        else:
            w = _swap(parts[0]) if r.op == "swap" else parts[0]
        if w.shape != shapes[r.ours]:
            if w.numel() != shapes[r.ours].numel():
                raise ValueError(
                    f"weights: {r.theirs[0]!r} has shape {tuple(w.shape)}, expected {tuple(shapes[r.ours])}"
                )
            w = w.reshape(shapes[r.ours])  # SD 1.x's 1x1-convolution proj_in / proj_out
        out[r.ours] = w
    extra = sorted(set(theirs) - used - _IGNORED)
    if extra:
        raise ValueError(
            f"weights: the diffusers state dict has {extra[0]!r}, which no diffcore tensor takes"
        )
    return out


_IGNORED = frozenset({"pos_embed.pos_embed"})  # SD3's stored table: recomputed from the config


def _lin(ours: str, theirs: str, op: str = "same") -> list[Rename]:
    return [Rename(f"{ours}.{k}", (f"{theirs}.{k}",), op) for k in ("weight", "bias")]


def _dit_renames(config: DiTConfig) -> list[Rename]:
    blocks = range(config.depth)
    emb = [f"transformer_blocks.{i}.norm1.emb" for i in blocks]
    out = _lin("x_embedder.proj", "pos_embed.proj")
    out += _lin("final_layer.modulation", "proj_out_1") + _lin("final_layer.linear", "proj_out_2")
    out.append(Rename("y_embedder.table.weight", tuple(f"{e}.class_embedder.embedding_table.weight" for e in emb), "copies"))  # fmt: skip
    for ours, theirs in (("t_embedder.mlp.0", "linear_1"), ("t_embedder.mlp.2", "linear_2")):
        for k in ("weight", "bias"):
            names = tuple(f"{e}.timestep_embedder.{theirs}.{k}" for e in emb)
            out.append(Rename(f"{ours}.{k}", names, "copies"))
    for i in blocks:
        o, t = f"blocks.{i}", f"transformer_blocks.{i}"
        out += _lin(f"{o}.modulation", f"{t}.norm1.linear") + _lin(f"{o}.attn.proj", f"{t}.attn1.to_out.0")
        out += _lin(f"{o}.mlp.fc1", f"{t}.ff.net.0.proj") + _lin(f"{o}.mlp.fc2", f"{t}.ff.net.2")
        for k in ("weight", "bias"):
            qkv = tuple(f"{t}.attn1.to_{p}.{k}" for p in "qkv")
            out.append(Rename(f"{o}.attn.qkv.qkv.{k}", qkv, "split"))
    return out


def _mmdit_renames(config: MMDiTConfig) -> list[Rename]:
    out = _lin("x_embedder.proj", "pos_embed.proj") + _lin("context_embedder", "context_embedder")
    out += _lin("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    out += _lin("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    out += _lin("pooled_embedder.0", "time_text_embed.text_embedder.linear_1")
    out += _lin("pooled_embedder.2", "time_text_embed.text_embedder.linear_2")
    for i in range(config.depth):
        o, t = f"blocks.{i}", f"transformer_blocks.{i}"
        last = i == config.depth - 1  # context_pre_only: AdaLayerNormContinuous, (scale, shift)
        out += _lin(f"{o}.x_modulation", f"{t}.norm1.linear")
        out += _lin(f"{o}.c_modulation", f"{t}.norm1_context.linear", "swap" if last else "same")
        for k in ("weight", "bias"):
            out.append(Rename(f"{o}.x_in.qkv.qkv.{k}", tuple(f"{t}.attn.to_{p}.{k}" for p in "qkv"), "split"))
            added = tuple(f"{t}.attn.add_{p}_proj.{k}" for p in "qkv")
            out.append(Rename(f"{o}.c_in.qkv.qkv.{k}", added, "split"))
        if config.qk_norm:
            for ours, theirs in (("x_in", "norm_q"), ("x_in", "norm_k"), ("c_in", "norm_added_q"), ("c_in", "norm_added_k")):  # fmt: skip
                out.append(Rename(f"{o}.{ours}.qkv.{theirs[-1]}_norm.weight", (f"{t}.attn.{theirs}.weight",)))
        out += _lin(f"{o}.x_out.proj", f"{t}.attn.to_out.0")
        out += _lin(f"{o}.x_out.mlp.fc1", f"{t}.ff.net.0.proj") + _lin(f"{o}.x_out.mlp.fc2", f"{t}.ff.net.2")
        if not last:
            out += _lin(f"{o}.c_out.proj", f"{t}.attn.to_add_out")
            out += _lin(f"{o}.c_out.mlp.fc1", f"{t}.ff_context.net.0.proj")
            out += _lin(f"{o}.c_out.mlp.fc2", f"{t}.ff_context.net.2")
    return (
        out
        + _lin("final_layer.modulation", "norm_out.linear", "swap")
        + _lin("final_layer.linear", "proj_out")
    )


_UNET_FIXED = {
    "encoder.time_embed.mlp.0": "time_embedding.linear_1", "encoder.time_embed.mlp.2": "time_embedding.linear_2",
    "encoder.class_embed.table": "class_embedding", "encoder.pooled_embed.0": "class_embedding.linear_1",
    "encoder.pooled_embed.2": "class_embedding.linear_2", "encoder.input_blocks.0.layers.0": "conv_in",
    "out.0": "conv_norm_out", "out.2": "conv_out",
}  # fmt: skip
_UNET_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_norm": "norm2",
             "out_layers.2": "conv2", "skip": "conv_shortcut"}  # fmt: skip
_UNET_BLOCK = {"norm1": "norm1", "attn1.qkv.qkv": "attn1.to_q|to_k|to_v", "attn1.proj": "attn1.to_out.0",
               "attn2.kv": "attn2.to_k|to_v", "norm2": "norm2", "attn2.q": "attn2.to_q",
               "attn2.proj": "attn2.to_out.0", "norm3": "norm3", "ff.proj_in": "ff.net.0.proj",
               "ff.proj_out": "ff.net.2"}  # fmt: skip


def _unet_layer(rest: str, res: str, attn: str) -> str:
    """A layer inside one of our blocks as diffusers' name, given where its ResBlock / attention live."""
    if rest.startswith(("norm.", "proj_in.", "proj_out.")):
        return f"{attn}.{rest}"
    if m := re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", rest):
        return f"{attn}.transformer_blocks.{m[1]}.{_UNET_BLOCK[m[2]]}.{m[3]}"
    m = re.match(r"(.+)\.(weight|bias)$", rest)
    if m is None or m[1] not in _UNET_RES:
        raise ValueError(f"weights: no diffusers name for U-Net tensor {rest!r}")
    return f"{res}.{_UNET_RES[m[1]]}.{m[2]}"


def _unet_name(key: str, per_level: int) -> str:
    """Our U-Net tensor name as diffusers' (a ``|`` separates the parts of a fused q/k/v)."""
    stem, _, leaf = key.rpartition(".")
    if stem in _UNET_FIXED:
        return f"{_UNET_FIXED[stem]}.{leaf}"
    if m := re.match(r"encoder\.input_blocks\.(\d+)\.layers\.(\d+)\.(.+)$", key):
        level, index = divmod(int(m[1]) - 1, per_level + 1)
        if index == per_level:  # the level's downsampling
            return f"down_blocks.{level}.downsamplers.0.{m[3]}"
        base = f"down_blocks.{level}"
        return _unet_layer(m[3], f"{base}.resnets.{index}", f"{base}.attentions.{index}")
    if m := re.match(r"encoder\.middle_block\.layers\.(\d+)\.(.+)$", key):
        res = f"mid_block.resnets.{0 if m[1] == '0' else 1}"
        return _unet_layer(m[2], res, "mid_block.attentions.0")
    if m := re.match(r"output_blocks\.(\d+)\.layers\.(\d+)\.(.+)$", key):
        up, index = divmod(int(m[1]), per_level + 1)
        base = f"up_blocks.{up}"
        if m[3].startswith("conv."):  # the level's upsampling
            return f"{base}.upsamplers.0.{m[3]}"
        return _unet_layer(m[3], f"{base}.resnets.{index}", f"{base}.attentions.{index}")
    raise ValueError(f"weights: no diffusers name for U-Net tensor {key!r}")


def _unet_renames(config: UNetConfig, keys: Iterable[str]) -> list[Rename]:
    out = []
    for key in keys:
        name = _unet_name(key, config.num_res_blocks)
        if "|" not in name:
            out.append(Rename(key, (name,)))
            continue
        head, parts, leaf = re.match(r"(.*)\.([^.]*\|[^.]*)\.(weight|bias)$", name).groups()  # type: ignore[union-attr]
        out.append(Rename(key, tuple(f"{head}.{p}.{leaf}" for p in parts.split("|")), "split"))
    return out


def renames_for(model_or_config: nn.Module | Any) -> list[Rename]:
    """The :class:`Rename` table of a DiT, MMDiT or U-Net (or of their configs)."""
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, DiTConfig):
        return _dit_renames(config)
    if isinstance(config, MMDiTConfig):
        renames = _mmdit_renames(config)
        return [r for r in renames if config.pooled_dim or not r.ours.startswith("pooled_embedder")]
    if isinstance(config, UNetConfig):
        return _unet_renames(config, _shapes(config))
    raise TypeError(f"model: expected a DiT, MMDiT or UNet (or its config), got {type(config).__name__}")


def _shapes(config: Any) -> dict[str, torch.Size]:
    """Our tensors' shapes for ``config``, from a model built on the meta device (nothing allocated)."""
    cls = {DiTConfig: DiT, MMDiTConfig: MMDiT, UNetConfig: UNet}[type(config)]
    with torch.device("meta"):
        model = cls(config)
    return {k: v.shape for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- configs


def _need(cfg: dict[str, Any], key: str, allowed: Iterable[Any], default: Any = None) -> None:
    value = cfg.get(key, default)
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"config.json: {key}={value!r} has no diffcore counterpart (supported: {allowed})")


def _dit_config_from(cfg: dict[str, Any]) -> DiTConfig:
    _need(cfg, "norm_type", ["ada_norm_zero"], "ada_norm_zero")
    _need(cfg, "activation_fn", ["gelu-approximate"], "gelu-approximate")
    _need(cfg, "norm_elementwise_affine", [False], False)
    _need(cfg, "attention_bias", [True], True)
    in_ch = int(cfg.get("in_channels", 4))
    out_ch = cfg.get("out_channels") or in_ch
    if out_ch not in (in_ch, 2 * in_ch):
        raise ValueError(
            f"config.json: out_channels={out_ch} must be in_channels or 2 * in_channels ({in_ch})"
        )
    if not cfg.get("num_embeds_ada_norm"):
        raise ValueError("config.json: num_embeds_ada_norm is required (diffusers' DiT is class-conditional)")
    heads = int(cfg.get("num_attention_heads", 16))
    size = int(cfg.get("sample_size", 32))
    return DiTConfig(
        input_size=(size, size), patch_size=int(cfg.get("patch_size", 2)), in_channels=in_ch,
        hidden_size=heads * int(cfg.get("attention_head_dim", 72)), depth=int(cfg.get("num_layers", 28)),
        num_heads=heads, num_classes=int(cfg["num_embeds_ada_norm"]), learn_sigma=out_ch == 2 * in_ch,
        time_freq_shift=1.0, pos_embed_axes="xy",
    )  # fmt: skip


def _dit_config_to(c: DiTConfig) -> dict[str, Any]:
    _check_square(c.input_size, c.patch_size)
    _check_our(c, time_freq_shift=1.0, pos_embed_axes="xy", pos_embed_offset=0.0, pos_embed_step=1.0,
               pos_embed="sincos", qk_norm=False, mlp_ratio=4.0, guidance_embed=False)  # fmt: skip
    if c.num_classes < 1:
        raise ValueError(
            "model: diffusers' DiTTransformer2DModel is class-conditional; num_classes must be >= 1"
        )
    return {
        "sample_size": c.input_size[0], "patch_size": c.patch_size[0], "in_channels": c.in_channels,
        "out_channels": c.out_channels, "num_layers": c.depth, "num_attention_heads": c.num_heads,
        "attention_head_dim": c.hidden_size // c.num_heads, "num_embeds_ada_norm": c.num_classes,
        "norm_type": "ada_norm_zero", "norm_elementwise_affine": False, "norm_eps": 1e-6,
        "activation_fn": "gelu-approximate", "attention_bias": True, "dropout": 0.0,
        "upcast_attention": False, "norm_num_groups": 32,
    }  # fmt: skip


def _mmdit_config_from(cfg: dict[str, Any]) -> MMDiTConfig:
    if cfg.get("dual_attention_layers"):
        raise ValueError(
            "config.json: dual_attention_layers (SD3.5's second attention) has no diffcore counterpart"
        )
    _need(cfg, "qk_norm", [None, "rms_norm"])
    heads, head_dim = int(cfg.get("num_attention_heads", 18)), int(cfg.get("attention_head_dim", 64))
    hidden = heads * head_dim
    if int(cfg.get("caption_projection_dim", hidden)) != hidden:
        raise ValueError(f"config.json: caption_projection_dim must equal the width {hidden}")
    in_ch = int(cfg.get("in_channels", 16))
    if int(cfg.get("out_channels") or in_ch) != in_ch:
        raise ValueError(f"config.json: out_channels must equal in_channels ({in_ch}) for an MMDiT")
    size, patch = int(cfg.get("sample_size", 128)), int(cfg.get("patch_size", 2))
    base, max_size = size // patch, cfg.get("pos_embed_max_size")
    step, offset = 1.0, 0.0
    if max_size:  # diffusers: positions arange(M) * base / M, cropped at the centre
        step = base / int(max_size)
        offset = ((int(max_size) - base) // 2) * step
    return MMDiTConfig(
        input_size=(size, size), patch_size=patch, in_channels=in_ch, hidden_size=hidden,
        depth=int(cfg.get("num_layers", 18)), num_heads=heads,
        pooled_dim=int(cfg.get("pooled_projection_dim", 2048)), context_dim=int(cfg.get("joint_attention_dim", 4096)),
        qk_norm=cfg.get("qk_norm") == "rms_norm", pos_embed_axes="xy", pos_embed_offset=offset, pos_embed_step=step,
    )  # fmt: skip


def _mmdit_max_size(c: MMDiTConfig) -> int | None:
    """SD3's ``pos_embed_max_size`` that gives ``c``'s table, or ``None`` for an uncropped one."""
    if c.pos_embed_offset == 0.0 and c.pos_embed_step == 1.0:
        return None
    base = c.grid_size[0]
    max_size = round(base / c.pos_embed_step)
    offset = ((max_size - base) // 2) * (base / max_size)
    if (
        abs(base / max_size - c.pos_embed_step) > 1e-9
        or not isinstance(c.pos_embed_offset, float)
        or abs(offset - c.pos_embed_offset) > 1e-9
    ):
        raise ValueError(
            f"model: pos_embed_offset={c.pos_embed_offset}, pos_embed_step={c.pos_embed_step} is no centre crop "
            "of an SD3 table (pos_embed_max_size)"
        )
    return max_size


def _mmdit_config_to(c: MMDiTConfig) -> dict[str, Any]:
    _check_square(c.input_size, c.patch_size)
    _check_our(
        c, time_freq_shift=0.0, pos_embed_axes="xy", pos_embed="sincos", mlp_ratio=4.0, guidance_embed=False
    )
    if not c.pooled_dim:
        raise ValueError(
            "model: SD3Transformer2DModel always embeds a pooled text vector; pooled_dim must be > 0"
        )
    return {
        "sample_size": c.input_size[0], "patch_size": c.patch_size[0], "in_channels": c.in_channels,
        "out_channels": c.in_channels, "num_layers": c.depth, "num_attention_heads": c.num_heads,
        "attention_head_dim": c.hidden_size // c.num_heads, "joint_attention_dim": c.context_dim,
        "caption_projection_dim": c.hidden_size, "pooled_projection_dim": c.pooled_dim,
        "pos_embed_max_size": _mmdit_max_size(c), "dual_attention_layers": [],
        "qk_norm": "rms_norm" if c.qk_norm else None,
    }  # fmt: skip


_UNET_FIXED_CONFIG: dict[str, list[Any]] = {
    "act_fn": ["silu"], "flip_sin_to_cos": [True], "freq_shift": [0], "time_embedding_type": ["positional"],
    "center_input_sample": [False], "addition_embed_type": [None], "encoder_hid_dim": [None],
    "time_cond_proj_dim": [None], "only_cross_attention": [False], "dual_cross_attention": [False],
    "conv_in_kernel": [3], "conv_out_kernel": [3], "downsample_padding": [1], "time_embedding_dim": [None],
    "timestep_post_act": [None], "attention_type": ["default"], "class_embeddings_concat": [False],
    "mid_block_only_cross_attention": [None, False], "cross_attention_norm": [None], "norm_eps": [1e-5],
    "mid_block_type": ["UNetMidBlock2DCrossAttn"], "reverse_transformer_layers_per_block": [None],
    "resnet_skip_time_act": [False], "resnet_out_scale_factor": [1.0], "mid_block_scale_factor": [1],
    "addition_time_embed_dim": [None], "projection_class_embeddings_input_dim": None,  # checked below
}  # fmt: skip
_UNET_DEFAULTS = {"mid_block_type": "UNetMidBlock2DCrossAttn", "act_fn": "silu", "flip_sin_to_cos": True,
                  "freq_shift": 0, "time_embedding_type": "positional", "center_input_sample": False,
                  "only_cross_attention": False, "dual_cross_attention": False, "conv_in_kernel": 3,
                  "conv_out_kernel": 3, "downsample_padding": 1, "attention_type": "default",
                  "class_embeddings_concat": False, "norm_eps": 1e-5, "resnet_skip_time_act": False,
                  "resnet_out_scale_factor": 1.0, "mid_block_scale_factor": 1}  # fmt: skip


def _per_level(value: Any, levels: int, name: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise ValueError(f"config.json: {name} has {len(value)} entries for {levels} levels")
        return [int(v) for v in value]
    return [int(value)] * levels


def _unet_config_from(cfg: dict[str, Any]) -> UNetConfig:
    for key, allowed in _UNET_FIXED_CONFIG.items():
        if allowed is not None:
            _need(cfg, key, allowed, _UNET_DEFAULTS.get(key))
    down = list(cfg.get("down_block_types", ()))
    up = list(cfg.get("up_block_types", ()))
    kinds = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
    if any(d not in kinds for d in down):
        raise ValueError(f"config.json: down_block_types {down} (supported: {sorted(kinds)})")
    expect_up = ["CrossAttnUpBlock2D" if kinds[d] else "UpBlock2D" for d in reversed(down)]
    if up != expect_up:
        raise ValueError(f"config.json: up_block_types {up} must mirror down_block_types ({expect_up})")
    channels = [int(c) for c in cfg["block_out_channels"]]
    if any(c % channels[0] for c in channels):
        raise ValueError(f"config.json: block_out_channels {channels} must be multiples of the first")
    levels = len(channels)
    attention = tuple(i for i, d in enumerate(down) if kinds[d])
    heads = _per_level(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), levels, "heads")
    used = sorted({(channels[i], heads[i]) for i in (*attention, levels - 1)})
    num_heads, head_dim = heads[-1], None
    if len({h for _, h in used}) > 1:
        if len({c // h for c, h in used}) > 1 or any(c % h for c, h in used):
            raise ValueError(
                f"config.json: heads per level {heads} are neither constant nor of constant width"
            )
        head_dim, num_heads = used[0][0] // used[0][1], 1
    cross = cfg.get("cross_attention_dim")
    if isinstance(cross, (list, tuple)):
        if len(set(cross)) != 1:
            raise ValueError(f"config.json: cross_attention_dim {cross} must be one width for every level")
        cross = cross[0]
    layers = int(cfg.get("layers_per_block", 2))
    depths = tuple(
        _per_level(cfg.get("transformer_layers_per_block", 1), levels, "transformer_layers_per_block")
    )
    classes, pooled = cfg.get("num_class_embeds"), None
    embed_type = cfg.get("class_embed_type")
    if embed_type == "projection":
        pooled = int(cfg["projection_class_embeddings_input_dim"])
    elif embed_type is not None:
        raise ValueError(f"config.json: class_embed_type={embed_type!r} (supported: None, 'projection')")
    return UNetConfig(
        in_channels=int(cfg.get("in_channels", 4)), out_channels=int(cfg.get("out_channels", 4)), dims=2,
        model_channels=channels[0], channel_mult=tuple(c // channels[0] for c in channels), num_res_blocks=layers,
        attention_levels=attention, num_heads=num_heads, head_dim=head_dim,
        transformer_depth=depths if len(set(depths)) > 1 else depths[0], mid_attention=True,
        num_groups=int(cfg.get("norm_num_groups", 32)),
        use_scale_shift_norm=cfg.get("resnet_time_scale_shift", "default") == "scale_shift",
        num_classes=int(classes) - 1 if classes is not None and pooled is None else None,
        context_dim=int(cross) if cross is not None else None, pooled_dim=pooled, dropout=float(cfg.get("dropout", 0.0)),
    )  # fmt: skip


def _unet_config_to(c: UNetConfig, sample_size: int) -> dict[str, Any]:
    if c.dims != 2:
        raise ValueError(f"model: UNet2DConditionModel is 2-D; this U-Net has dims={c.dims}")
    if not c.mid_attention:
        raise ValueError("model: UNet2DConditionModel's middle block attends; mid_attention must be True")
    if c.context_dim is None:
        raise ValueError("model: UNet2DConditionModel needs cross-attention; context_dim must be set")
    if c.num_classes is not None and c.pooled_dim is not None:
        raise ValueError("model: UNet2DConditionModel embeds classes or a pooled vector, not both")
    levels = range(len(c.channel_mult))
    depths = [c.depth_at(lv) for lv in levels]
    if (c.mid_transformer_depth or depths[-1]) != depths[-1]:
        raise ValueError("model: diffusers' middle block has the last level's transformer depth")
    channels = [c.model_channels * m for m in c.channel_mult]
    out: dict[str, Any] = {
        "sample_size": sample_size, "in_channels": c.in_channels, "out_channels": c.resolved_out_channels,
        "down_block_types": ["CrossAttnDownBlock2D" if lv in c.attention_levels else "DownBlock2D" for lv in levels],
        "up_block_types": ["CrossAttnUpBlock2D" if lv in c.attention_levels else "UpBlock2D" for lv in reversed(levels)],
        "mid_block_type": "UNetMidBlock2DCrossAttn", "block_out_channels": channels,
        "layers_per_block": c.num_res_blocks, "norm_num_groups": c.num_groups, "norm_eps": 1e-5,
        "cross_attention_dim": c.context_dim, "transformer_layers_per_block": depths,
        "attention_head_dim": [heads_for_channels(c, ch) for ch in channels],  # diffusers: heads per level
        "use_linear_projection": True, "dropout": c.dropout,
        "resnet_time_scale_shift": "scale_shift" if c.use_scale_shift_norm else "default",
        "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
    }  # fmt: skip
    if c.num_classes is not None:
        out["num_class_embeds"] = c.num_classes + 1
    if c.pooled_dim is not None:
        out.update(class_embed_type="projection", projection_class_embeddings_input_dim=c.pooled_dim)
    return out


def _check_square(sizes: tuple[int, ...], patch: tuple[int, ...]) -> None:
    if len(sizes) != 2 or sizes[0] != sizes[1] or patch[0] != patch[1]:
        raise ValueError(
            f"model: diffusers' transformers take square 2-D inputs; got {sizes} with patch {patch}"
        )


def _check_our(config: Any, **required: Any) -> None:
    for key, value in required.items():
        if getattr(config, key) != value:
            raise ValueError(
                f"model: {key}={getattr(config, key)!r} has no counterpart in the diffusers class "
                f"(it needs {key}={value!r}; build the model with it, or load one with load_diffusers_model)"
            )


# ---------------------------------------------------------------------------------------------- public API

_CLASSES: dict[str, tuple[type[nn.Module], Callable[[dict[str, Any]], Any]]] = {
    "DiTTransformer2DModel": (DiT, _dit_config_from),
    "SD3Transformer2DModel": (MMDiT, _mmdit_config_from),
    "UNet2DConditionModel": (UNet, _unet_config_from),
}


def read_diffusers_folder(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(config, state_dict)`` of a diffusers model folder (one safetensors file, or shards with an index)."""
    folder = Path(directory)
    config_path = folder / DIFFUSERS_CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"directory: {folder} has no {DIFFUSERS_CONFIG_NAME} (expected a diffusers model folder)"
        )
    config = read_json(config_path, "a diffusers model configuration")
    single, index = folder / DIFFUSERS_WEIGHTS_NAME, folder / DIFFUSERS_INDEX_NAME
    if single.is_file():
        return config, load_file(str(single))
    if index.is_file():
        shards = sorted(set(read_json(index, "a safetensors shard index").get("weight_map", {}).values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return config, state
    raise FileNotFoundError(
        f"directory: {folder} has no {DIFFUSERS_WEIGHTS_NAME} (nor an index of shards); pickled .bin weights are not read"
    )


def config_from_diffusers(config: dict[str, Any]) -> DiTConfig | MMDiTConfig | UNetConfig:
    """Our model configuration for a diffusers ``config.json`` dict (its ``_class_name`` picks the model)."""
    name = config.get("_class_name")
    if name not in _CLASSES:
        raise ValueError(f"config.json: _class_name={name!r}; supported: {sorted(_CLASSES)}")
    return _CLASSES[name][1](config)


def model_from_diffusers(config: dict[str, Any], state: dict[str, Tensor]) -> nn.Module:
    """Our DiT / MMDiT / UNet from a diffusers ``config.json`` dict and its state dict (tensors copied as they are)."""
    ours = config_from_diffusers(config)
    model = _CLASSES[config["_class_name"]][0](ours)
    model.load_state_dict(state_from_diffusers(state, ours), strict=True)
    return model.eval()


def state_from_diffusers(state: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """diffusers' state dict of the model ``config`` describes, in our names."""
    return from_diffusers_state(state, renames_for(config), _shapes(config))


def diffusers_state_from(model: nn.Module) -> dict[str, Tensor]:
    """Our model's state dict in diffusers' names (SD3's stored position table included). A model carrying LoRA
    adapters gives its base weights (with any adapter merged into them); save adapters with
    :func:`diffcore.interop.lora.save_lora_file`."""
    base = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}
    state = to_diffusers_state(base, renames_for(model))
    config = model.config  # type: ignore[attr-defined]
    if isinstance(config, MMDiTConfig) and (max_size := _mmdit_max_size(config)) is not None:
        table = sincos_pos_embed(
            config.hidden_size, (max_size, max_size), axes="xy", step=config.pos_embed_step
        )
        state["pos_embed.pos_embed"] = table[None]
    return state


def diffusers_config_from(model: nn.Module, sample_size: int = 64) -> dict[str, Any]:
    """The diffusers ``config.json`` (with ``_class_name``) of our DiT / MMDiT / UNet; ``sample_size`` is written
    for a U-Net, which has no input size of its own."""
    config = model.config  # type: ignore[attr-defined]
    if isinstance(config, DiTConfig):
        name, body = "DiTTransformer2DModel", _dit_config_to(config)
    elif isinstance(config, MMDiTConfig):
        name, body = "SD3Transformer2DModel", _mmdit_config_to(config)
    elif isinstance(config, UNetConfig):
        name, body = "UNet2DConditionModel", _unet_config_to(config, sample_size)
    else:
        raise TypeError(f"model: expected a DiT, MMDiT or UNet, got {type(model).__name__}")
    return {"_class_name": name, "_diffusers_version": DIFFUSERS_FORMAT_VERSION, **body}


def load_diffusers_model(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Read a diffusers model folder (``DiTTransformer2DModel``, ``SD3Transformer2DModel`` or
    ``UNet2DConditionModel``) into our DiT / MMDiT / UNet, in eval mode on ``device``."""
    config, state = read_diffusers_folder(directory)
    try:
        return model_from_diffusers(config, state).to(device)
    except ValueError as exc:
        raise ValueError(f"{Path(directory)}: {exc}") from exc


def save_diffusers_model(model: nn.Module, directory: str | os.PathLike[str], sample_size: int = 64) -> Path:
    """Write our DiT / MMDiT / UNet as a diffusers model folder (``config.json`` +
    ``diffusion_pytorch_model.safetensors``) that the diffusers class's ``from_pretrained`` reads."""
    config = diffusers_config_from(model, sample_size)  # refuses first, before anything is written
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(
        diffusers_state_from(model), out / DIFFUSERS_WEIGHTS_NAME, metadata={"format": "pt"}
    )
    write_json(json.loads(json.dumps(config)), out / DIFFUSERS_CONFIG_NAME)
    return out
