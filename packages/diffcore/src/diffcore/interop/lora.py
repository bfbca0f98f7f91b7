"""LoRA files of diffusers models <-> LoRA adapters on our DiT, MMDiT and U-Net.

Three file formats name the layers of the *diffusers* model (``down_blocks.1.attentions.0.transformer_blocks.0
.attn1.to_q``); the layers of ours differ (fused ``qkv``), and :mod:`diffcore.interop.diffusers`'s rename table
carries an adapter across:

- ``diffusers``: one safetensors file (``pytorch_lora_weights.safetensors``) with keys
  ``<prefix>.<layer>.lora_A.weight`` / ``.lora_B.weight`` (prefix ``unet`` or ``transformer``, or none) and the
  PEFT ``LoraConfig`` in the header's ``lora_adapter_metadata``: what ``load_lora_weights`` /
  ``load_lora_adapter`` read and ``save_lora_adapter`` writes;
- ``peft``: a PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``, keys
  ``base_model.model.<layer>.lora_A.weight``), what ``peft``'s ``save_pretrained`` writes for a diffusers model;
- ``kohya``: one safetensors file with ``lora_unet_<layer, dots as underscores>.lora_down.weight`` /
  ``.lora_up.weight`` / ``.alpha`` (the Civitai habit; U-Net layers named as diffusers names them, SD 1.x style).

A LoRA on a layer ``W`` adds ``s B A x`` with ``s = alpha / r`` (Hu et al. 2021, Eq. 3). Reading, each layer's
scale is folded into ``B``; LoRAs on diffusers' ``to_q``, ``to_k``, ``to_v`` become one LoRA on our fused
``qkv`` whose ``A`` stacks theirs and whose ``B`` is block-diagonal (rank ``r_q + r_k + r_v``): the same update,
exactly. Writing, our fused layer's ``A`` is shared by the three parts and ``B`` is cut in three. Files written
here have ``alpha = r`` (scale 1) on every layer, the scale being in ``B``.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn

from diffcore.interop.diffusers import Rename, renames_for
from diffcore.nn.lora import adapter_names, inject_lora
from diffcore.pretrained import atomic_save_safetensors, atomic_write_bytes

__all__ = [
    "DIFFUSERS_LORA_NAME",
    "LORA_FORMATS",
    "LoraLayer",
    "load_lora_file",
    "read_lora_layers",
    "save_lora_file",
]

DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"
LORA_FORMATS = ("diffusers", "peft", "kohya")
KOHYA_PREFIX = "lora_unet_"
PEFT_PREFIX = "base_model.model."

LoraLayer = tuple[Tensor, Tensor]
"""``(A, B)`` of one layer with its scale folded into ``B``: ``A: (r, in)``, ``B: (out, r)``, update ``B A x``."""


# ---------------------------------------------------------------------------------------------- reading files


def read_lora_layers(path: str | os.PathLike[str]) -> tuple[str, dict[str, LoraLayer]]:
    """``(format, {diffusers layer name: (A, B)})`` of a LoRA file or PEFT folder, scales folded into ``B``."""
    src = Path(path)
    if src.is_dir():
        return "peft", _read_peft_folder(src)
    if not src.is_file():
        raise FileNotFoundError(
            f"path: {src} does not exist (expected a LoRA .safetensors file or PEFT folder)"
        )
    with safe_open(str(src), framework="pt") as f:
        keys = list(f.keys())
        metadata = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in keys}
    if any(k.startswith(KOHYA_PREFIX) or k.startswith("lora_te") for k in keys):
        return "kohya", _read_kohya(state, src)
    config = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None
    return "diffusers", _read_peft_state(state, config, src)


def _strip(name: str) -> str:
    for prefix in (PEFT_PREFIX, "unet.", "transformer."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _scale_for(layer: str, rank: int, config: dict[str, Any] | None) -> float:
    """``alpha / r`` of one layer from a PEFT config (its patterns included); ``1`` when there is no config."""
    if config is None:
        return 1.0
    r = next(
        (v for k, v in (config.get("rank_pattern") or {}).items() if re.match(rf"(.*\.)?({k})$", layer)), None
    )
    alpha = next(
        (v for k, v in (config.get("alpha_pattern") or {}).items() if re.match(rf"(.*\.)?({k})$", layer)),
        None,
    )
    r = r if r is not None else config.get("r", rank)
    alpha = alpha if alpha is not None else config.get("lora_alpha", r)
    if config.get("use_rslora"):
        return float(alpha) / float(r) ** 0.5
    return float(alpha) / float(r)


def _read_peft_state(
    state: dict[str, Tensor], config: dict[str, Any] | None, src: Path
) -> dict[str, LoraLayer]:
    pairs: dict[str, dict[str, Tensor]] = defaultdict(dict)
    for key, value in state.items():
        m = re.match(r"(.+)\.lora_(A|B)(?:\.[^.]+)?\.weight$", key)
        if m is None:
            raise ValueError(
                f"path: {src} holds {key!r}, which is not a LoRA A/B weight (expected <layer>.lora_A.weight)"
            )
        pairs[_strip(m[1])][m[2]] = value
    if config is not None and config.get("use_dora"):
        raise ValueError(f"path: {src} is a DoRA adapter (use_dora), which has no plain LoRA form")
    return _layers(pairs, lambda layer, r: _scale_for(layer, r, config), src)


def _layers(pairs: dict[str, dict[str, Tensor]], scale: Any, src: Path) -> dict[str, LoraLayer]:
    out = {}
    for layer, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"path: {src} has only lora_{next(iter(ab))} for {layer!r}")
        a, b = ab["A"].float(), ab["B"].float()
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"path: {src}: {layer!r} is a convolution LoRA; only linear layers are read")
        out[layer] = (a, b * scale(layer, a.shape[0]))
    return out


def _read_peft_folder(folder: Path) -> dict[str, LoraLayer]:
    from safetensors.torch import load_file

    config_path, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for p in (config_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"path: {folder} has no {p.name} (expected a PEFT adapter folder)")
    config = json.loads(config_path.read_text())
    return _read_peft_state(load_file(str(weights)), config, folder)


def _read_kohya(state: dict[str, Tensor], src: Path) -> dict[str, dict[str, Tensor]]:
    """kohya's keys, grouped by their underscored layer name (resolved against a model later)."""
    text = sorted(k for k in state if k.startswith("lora_te"))
    if text:
        raise ValueError(
            f"path: {src} holds text-encoder LoRA weights ({text[0]!r}); only the U-Net's are read"
        )
    groups: dict[str, dict[str, Tensor]] = defaultdict(dict)
    for key, value in state.items():
        m = re.match(rf"{KOHYA_PREFIX}(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$", key)
        if m is None:
            raise ValueError(f"path: {src} holds {key!r}, which is not a kohya LoRA key")
        groups[m[1]][m[2]] = value
    return groups  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- their layers -> ours


def _index(model: nn.Module) -> dict[str, tuple[Rename, int]]:
    """diffusers layer name -> (the rename that holds it, which part of ours it is)."""
    out = {}
    for r in renames_for(model):
        if not r.ours.endswith(".weight"):
            continue
        for i, name in enumerate(r.theirs):
            out[name.removesuffix(".weight")] = (r, i)
    return out


def _kohya_layers(
    groups: dict[str, dict[str, Tensor]], index: dict[str, Any], src: Path
) -> dict[str, LoraLayer]:
    by_underscore = {name.replace(".", "_"): name for name in index}
    out = {}
    for flat, parts in groups.items():
        if flat not in by_underscore:
            raise ValueError(f"path: {src}: {KOHYA_PREFIX}{flat} names no layer of this model")
        down, up = parts.get("lora_down.weight"), parts.get("lora_up.weight")
        if down is None or up is None:
            raise ValueError(f"path: {src}: {KOHYA_PREFIX}{flat} lacks lora_down or lora_up")
        if down.ndim != 2:
            raise ValueError(
                f"path: {src}: {KOHYA_PREFIX}{flat} is a convolution LoRA; only linear layers are read"
            )
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
        out[by_underscore[flat]] = (down.float(), up.float() * (alpha / rank))
    return out


def _to_ours(model: nn.Module, layers: dict[str, LoraLayer]) -> dict[str, LoraLayer]:
    """Our layer name -> ``(A, B)`` (scale 1) for diffusers' layers ``layers``."""
    index = _index(model)
    grouped: dict[str, dict[int, LoraLayer]] = defaultdict(dict)
    renames: dict[str, Rename] = {}
    for name, ab in layers.items():
        if name not in index:
            raise ValueError(
                f"lora: {name!r} is no linear layer of the diffusers counterpart of {type(model).__name__}"
            )
        rename, part = index[name]
        if rename.op == "copies":
            raise ValueError(
                f"lora: {name!r} is one of the per-block embedders diffcore shares; it cannot take a LoRA"
            )
        layer = rename.ours.removesuffix(".weight")
        grouped[layer][part] = ab
        renames[layer] = rename
    out = {}
    for layer, parts in grouped.items():
        rename = renames[layer]
        if rename.op == "split":
            out[layer] = _fuse(parts, len(rename.theirs))
        else:
            a, b = parts[0]
            out[layer] = (a, _swap(b) if rename.op == "swap" else b)
    return out


def _swap(b: Tensor) -> Tensor:
    top, bottom = b.chunk(2, dim=0)
    return torch.cat([bottom, top], dim=0)


def _fuse(parts: dict[int, LoraLayer], count: int) -> LoraLayer:
    """One LoRA on the fused layer: ``A`` the stack of the parts', ``B`` block-diagonal (zero where a part has none)."""
    out_part = next(iter(parts.values()))[1].shape[0]
    a = torch.cat([parts[i][0] for i in sorted(parts)])
    b = torch.zeros(out_part * count, a.shape[0])
    col = 0
    for i in sorted(parts):
        pa, pb = parts[i]
        b[i * out_part : (i + 1) * out_part, col : col + pa.shape[0]] = pb
        col += pa.shape[0]
    return a, b


# ---------------------------------------------------------------------------------------------- public API


def load_lora_file(
    model: nn.Module, path: str | os.PathLike[str], adapter_name: str = "default"
) -> nn.Module:
    """Inject the LoRA of a diffusers (``.safetensors``), kohya (``.safetensors``) or PEFT (folder) file, written
    for the diffusers counterpart of ``model`` (our DiT / MMDiT / UNet), as adapter ``adapter_name``.

    The adapter becomes the only active one and nothing is trainable (load for inference; see
    :func:`diffcore.nn.lora.freeze_all_but_adapter` to train it further).
    """
    import peft

    if adapter_name in adapter_names(model):
        raise ValueError(f"adapter_name: {adapter_name!r} already exists in the model")
    fmt, layers = read_lora_layers(path)
    if fmt == "kohya":
        layers = _kohya_layers(layers, _index(model), Path(path))  # type: ignore[arg-type]
    ours = _to_ours(model, layers)
    ranks = {re.escape(name): a.shape[0] for name, (a, _) in ours.items()}
    config = peft.LoraConfig(
        r=8,
        lora_alpha=8,
        target_modules=sorted(ours),
        rank_pattern=ranks,
        alpha_pattern=dict(ranks),
        bias="none",
    )
    inject_lora(model, config, adapter_name)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (a, b) in ours.items():
            layer = modules[name]
            layer.lora_A[adapter_name].weight.copy_(a)
            layer.lora_B[adapter_name].weight.copy_(b)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _our_layers(model: nn.Module, adapter_name: str) -> dict[str, LoraLayer]:
    """Our adapter's layers, each ``(A, s B)``."""
    if adapter_name not in adapter_names(model):
        raise ValueError(f"adapter_name: {adapter_name!r} is not in the model; it has {adapter_names(model)}")
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and adapter_name in getattr(module, "lora_A", {}):
            a = module.lora_A[adapter_name].weight.detach().float()
            b = module.lora_B[adapter_name].weight.detach().float() * module.scaling[adapter_name]
            out[name] = (a, b)
    return out


def _to_theirs(model: nn.Module, adapter_name: str) -> dict[str, LoraLayer]:
    renames = {r.ours.removesuffix(".weight"): r for r in renames_for(model) if r.ours.endswith(".weight")}
    out = {}
    for name, (a, b) in _our_layers(model, adapter_name).items():
        rename = renames.get(name)
        if rename is None or rename.op == "copies":
            raise ValueError(
                f"lora: our layer {name!r} has no single diffusers counterpart to carry the adapter"
            )
        theirs = [n.removesuffix(".weight") for n in rename.theirs]
        if rename.op == "split":
            out.update(
                {n: (a.clone(), part.clone()) for n, part in zip(theirs, b.chunk(len(theirs)), strict=True)}
            )
        else:
            out[theirs[0]] = (a, _swap(b) if rename.op == "swap" else b)
    return out


def save_lora_file(
    model: nn.Module, path: str | os.PathLike[str], adapter_name: str = "default", format: str = "diffusers"
) -> Path:
    """Write adapter ``adapter_name`` of our DiT / MMDiT / UNet for its diffusers counterpart.

    ``format``: ``"diffusers"`` (``path`` is a ``.safetensors`` file, keys ``unet.`` / ``transformer.`` +
    layer), ``"kohya"`` (a ``.safetensors`` file; U-Nets only) or ``"peft"`` (``path`` is a folder). Every layer
    is written with ``alpha = r``, its scale folded into ``B``.
    """
    from diffcore.nn.unet import UNet

    if format not in LORA_FORMATS:
        raise ValueError(f"format: expected one of {LORA_FORMATS}, got {format!r}")
    if format == "kohya" and not isinstance(model, UNet):
        raise ValueError(
            "format: kohya files name U-Net layers; write a DiT or MMDiT adapter as 'diffusers' or 'peft'"
        )
    layers = _to_theirs(model, adapter_name)
    out = Path(path)
    ranks = {name: a.shape[0] for name, (a, _) in layers.items()}
    if format == "kohya":
        state = {}
        for name, (a, b) in layers.items():
            flat = KOHYA_PREFIX + name.replace(".", "_")
            state |= {
                f"{flat}.lora_down.weight": a,
                f"{flat}.lora_up.weight": b,
                f"{flat}.alpha": torch.tensor(float(a.shape[0])),
            }
        atomic_save_safetensors(state, out, metadata={"format": "pt"})
        return out
    config = _peft_config(layers, ranks)
    if format == "peft":
        state = {
            f"{PEFT_PREFIX}{n}.lora_{k}.weight": w
            for n, (a, b) in layers.items()
            for k, w in (("A", a), ("B", b))
        }
        atomic_save_safetensors(state, out / "adapter_model.safetensors", metadata={"format": "pt"})
        atomic_write_bytes(out / "adapter_config.json", json.dumps(config, indent=2, sort_keys=True).encode())
        return out
    prefix = "unet." if isinstance(model, UNet) else "transformer."
    state = {
        f"{prefix}{n}.lora_{k}.weight": w for n, (a, b) in layers.items() for k, w in (("A", a), ("B", b))
    }
    metadata = {"format": "pt", METADATA_KEY: json.dumps(config, sort_keys=True)}
    atomic_save_safetensors(state, out, metadata=metadata)
    return out


def _peft_config(layers: dict[str, LoraLayer], ranks: dict[str, int]) -> dict[str, Any]:
    """A PEFT ``LoraConfig`` dict for ``layers``: the most common rank as ``r``, the others in ``rank_pattern``,
    ``alpha = r`` everywhere (scale 1)."""
    common = max(set(ranks.values()), key=list(ranks.values()).count)
    pattern = {re.escape(n): r for n, r in ranks.items() if r != common}
    return {
        "peft_type": "LORA", "r": common, "lora_alpha": common, "target_modules": sorted(layers),
        "rank_pattern": pattern, "alpha_pattern": dict(pattern), "bias": "none", "lora_dropout": 0.0,
        "use_rslora": False, "use_dora": False, "init_lora_weights": True, "fan_in_fan_out": False,
        "task_type": None, "inference_mode": True, "base_model_name_or_path": None, "modules_to_save": None,
        "layers_to_transform": None, "layers_pattern": None, "megatron_config": None, "revision": None,
    }  # fmt: skip
