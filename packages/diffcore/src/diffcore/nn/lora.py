"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through PEFT.

A LoRA adapter replaces a linear map ``W x`` by ``W x + (alpha / r) * B A x`` with ``A: (r, in)``,
``B: (out, r)`` and ``B`` initialised to zero (Hu et al. Sec. 4.1), so a fresh adapter leaves the
model unchanged. Adapters are injected in place into any ``nn.Module`` (our U-Net, DiT, MMDiT, a
ControlledModel, ...) with ``peft.inject_adapter_in_model``; the model keeps its own class and its
``forward`` signature.

On disk an adapter is a folder in the PEFT format that diffusers and the community share:
``adapter_config.json`` (a ``peft.LoraConfig``) and ``adapter_model.safetensors`` whose keys are
``base_model.model.<module path>.lora_A.weight`` / ``.lora_B.weight``.

Typical use::

    add_lora(net, rank=16, alpha=16)                  # only the LoRA weights are trainable
    ...train...
    save_lora(net, "out/style")                        # adapter_config.json + adapter_model.safetensors
    load_lora(other_net, "out/style", adapter_name="style")
    set_adapters(other_net, ["style", "subject"], weights=[0.7, 1.0])   # W + sum_i w_i s_i B_i A_i
    merge_lora(other_net)                              # fold the active adapters into W
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import nn

from diffcore.pretrained import atomic_save_safetensors, atomic_write_bytes

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."

ATTENTION_MLP_PARENTS = frozenset(
    {"attn", "attn1", "attn2", "attention", "self_attn", "cross_attn", "mlp", "ff", "ffn", "feed_forward"}
)
"""A linear layer inside a module of one of these names is an attention or MLP projection."""

PROJECTION_NAMES = frozenset(
    {
        "q", "k", "v", "kv", "qkv", "to_q", "to_k", "to_v", "to_out", "q_proj", "k_proj", "v_proj",
        "out_proj", "proj", "proj_in", "proj_out", "fc1", "fc2",
    }
)  # fmt: skip
"""Names of linear layers that are attention or MLP projections wherever they sit."""

EXCLUDED_PARENT_MARKERS = ("embed", "modulation", "adaln")
"""A linear layer under a module whose name contains one of these (lower-cased) is never a default target."""


def _peft():
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - exercised only without the optional extra
        raise ImportError("LoRA needs the PEFT library: pip install 'diffcore[peft]'") from exc
    return peft


def find_lora_targets(model: nn.Module) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers that are attention or MLP projections.

    A linear layer is chosen when its own name is a projection name (``qkv``, ``to_q``, ``proj``,
    ``fc1``, ...; :data:`PROJECTION_NAMES`) or when one of its parent modules is an attention or
    MLP block (:data:`ATTENTION_MLP_PARENTS`). Layers under embedders and adaLN modulations
    (:data:`EXCLUDED_PARENT_MARKERS`) are not chosen, as in the usual LoRA recipes for diffusion models.
    """
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not name:
            continue
        parts = name.split(".")
        if any(marker in part.lower() for part in parts[:-1] for marker in EXCLUDED_PARENT_MARKERS):
            continue
        if parts[-1] in PROJECTION_NAMES or any(p in ATTENTION_MLP_PARENTS for p in parts[:-1]):
            targets.append(name)
    return targets


def _tuner_layers(model: nn.Module) -> Iterator[nn.Module]:
    _peft()
    from peft.tuners.tuners_utils import BaseTunerLayer as base_tuner_layer

    for module in model.modules():
        if isinstance(module, base_tuner_layer):
            yield module


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the LoRA adapters injected into ``model`` (in order of addition)."""
    return list(getattr(model, "peft_config", {}).keys())


def _check_adapter(model: nn.Module, name: str) -> None:
    if name not in adapter_names(model):
        raise ValueError(f"adapter_name: {name!r} is not in the model; it has {adapter_names(model)}")


def lora_parameters(model: nn.Module, adapter_name: str | None = None) -> list[nn.Parameter]:
    """The LoRA ``A`` and ``B`` parameters of one adapter (or of all adapters when ``None``)."""
    params = []
    for name, p in model.named_parameters():
        parts = name.split(".")
        if any(part.startswith("lora_") for part in parts) and (
            adapter_name is None or adapter_name in parts
        ):
            params.append(p)
    return params


def freeze_all_but_adapter(model: nn.Module, adapter_name: str) -> None:
    """Set ``requires_grad`` True for the LoRA parameters of ``adapter_name`` and False for all others."""
    _check_adapter(model, adapter_name)
    keep = {id(p) for p in lora_parameters(model, adapter_name)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float | None = None,
    target_modules: Sequence[str] | str | None = None,
    adapter_name: str = "default",
    dropout: float = 0.0,
) -> nn.Module:
    """Inject a LoRA adapter into ``model`` in place; only its parameters stay trainable.

    Args:
        model: any module; it keeps its class and forward signature.
        rank: LoRA rank ``r``.
        alpha: ``lora_alpha``; the update is scaled by ``alpha / rank`` (``None``: ``alpha = rank``).
        target_modules: PEFT's ``target_modules`` (module names matched as suffixes, or one regex
            matched in full); ``None``: :func:`find_lora_targets` (attention and MLP projections).
        adapter_name: name of the new adapter; it becomes the only active one.
        dropout: dropout on the LoRA branch input.

    Returns:
        ``model`` itself, with ``B = 0`` so its output is unchanged.
    """
    peft = _peft()
    if rank < 1:
        raise ValueError(f"rank: expected a positive integer, got {rank}")
    if adapter_name in adapter_names(model):
        raise ValueError(f"adapter_name: {adapter_name!r} already exists in the model")
    if target_modules is None:
        target_modules = find_lora_targets(model)
        if not target_modules:
            raise ValueError(
                f"target_modules: found no attention/MLP linear layers in {type(model).__name__}; pass them"
            )
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=float(rank if alpha is None else alpha),
        target_modules=targets,
        lora_dropout=dropout,
        bias="none",
        init_lora_weights=True,
    )
    _inject(model, config, adapter_name)
    return model


def inject_lora(model: nn.Module, config: object, adapter_name: str = "default") -> nn.Module:
    """Inject an adapter described by a ``peft.LoraConfig`` (per-layer ranks through its ``rank_pattern`` /
    ``alpha_pattern``) into ``model`` in place; it becomes the only active adapter and the only trainable part."""
    if adapter_name in adapter_names(model):
        raise ValueError(f"adapter_name: {adapter_name!r} already exists in the model")
    _inject(model, config, adapter_name)
    return model


def _inject(model: nn.Module, config: object, adapter_name: str) -> None:
    peft = _peft()
    try:
        with warnings.catch_warnings():
            # PEFT warns when a second adapter joins the first; several adapters are intended here.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            peft.inject_adapter_in_model(config, model, adapter_name=adapter_name)
    except ValueError as exc:
        raise ValueError(f"target_modules: PEFT could not place the adapter ({exc})") from exc
    set_adapters(model, [adapter_name])
    freeze_all_but_adapter(model, adapter_name)


def set_adapters(model: nn.Module, names: Sequence[str], weights: Sequence[float] | None = None) -> None:
    """Make ``names`` the active adapters, adapter ``i`` scaled by ``weights[i]`` (default 1).

    The layer output becomes ``W x + sum_i weights[i] * (alpha_i / r_i) * B_i A_i x``. Trainability
    (``requires_grad``) is left as it was.
    """
    names = list(names)
    for name in names:
        _check_adapter(model, name)
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    if len(weights) != len(names):
        raise ValueError(f"weights: expected {len(names)} weights (one per adapter), got {len(weights)}")
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    for layer in _tuner_layers(model):
        layer.set_adapter(names)
        for name, weight in zip(names, weights, strict=True):
            layer.set_scale(name, weight)
    for p, flag in grad_flags:
        p.requires_grad_(flag)


def merge_lora(model: nn.Module, names: Sequence[str] | None = None, safe: bool = True) -> None:
    """Fold adapters ``names`` (default: the active ones, with their weights) into the base weights ``W``.

    After merging the adapter branch is skipped, so the forward pass costs what the base model
    costs. ``safe`` checks the merged weights for NaN/inf before writing them.
    """
    names = None if names is None else list(names)
    for name in names or []:
        _check_adapter(model, name)
    for layer in _tuner_layers(model):
        layer.merge(safe_merge=safe, adapter_names=names)


def unmerge_lora(model: nn.Module) -> None:
    """Subtract every merged adapter from the base weights again (up to float rounding)."""
    for layer in _tuner_layers(model):
        if layer.merged:
            layer.unmerge()


def delete_lora(model: nn.Module, adapter_name: str) -> None:
    """Remove an adapter (its layers and config) from the model; unmerge first if it is merged."""
    _check_adapter(model, adapter_name)
    for layer in _tuner_layers(model):
        if adapter_name in layer.merged_adapters:
            raise ValueError(f"adapter_name: {adapter_name!r} is merged; call unmerge_lora first")
        layer.delete_adapter(adapter_name)
    del model.peft_config[adapter_name]


def save_lora(model: nn.Module, directory: str | os.PathLike[str], adapter_name: str = "default") -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT format) into ``directory``."""
    peft = _peft()
    _check_adapter(model, adapter_name)
    out = Path(directory)
    state = peft.get_peft_model_state_dict(model, adapter_name=adapter_name)
    state = {PEFT_KEY_PREFIX + k: v for k, v in state.items()}
    atomic_save_safetensors(state, out / ADAPTER_WEIGHTS_NAME, metadata={"format": "pt"})
    config = model.peft_config[adapter_name].to_dict()
    atomic_write_bytes(
        out / ADAPTER_CONFIG_NAME, json.dumps(_jsonable(config), indent=2, sort_keys=True).encode()
    )
    return out


def _jsonable(value: object) -> object:
    """PEFT's config dict as JSON types: sets (``target_modules``) become sorted lists; PEFT's enums are str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)  # type: ignore[type-var]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def load_lora(
    model: nn.Module,
    directory: str | os.PathLike[str],
    adapter_name: str = "default",
    trainable: bool = False,
) -> nn.Module:
    """Inject the adapter saved in ``directory`` (PEFT format) under ``adapter_name`` and load its weights.

    The loaded adapter becomes the only active one. With ``trainable=False`` every parameter is
    frozen (inference); with ``True`` only this adapter's parameters are trainable.
    """
    peft = _peft()
    from safetensors.torch import load_file

    folder = Path(directory)
    config_path, weights_path = folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"directory: {folder} has no {p.name} (expected a PEFT adapter folder)")
    if adapter_name in adapter_names(model):
        raise ValueError(f"adapter_name: {adapter_name!r} already exists in the model")
    config = peft.LoraConfig.from_pretrained(str(folder))
    state = {k.removeprefix(PEFT_KEY_PREFIX): v for k, v in load_file(str(weights_path)).items()}
    _inject(model, config, adapter_name)
    result = peft.set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []))
    if unexpected:
        delete_lora(model, adapter_name)
        raise ValueError(
            f"directory: {weights_path} has weights for modules the model lacks: {unexpected[:5]}"
        )
    expected = {id(p) for p in lora_parameters(model, adapter_name)}
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k and f".{adapter_name}." in k]
    if missing or not expected:
        delete_lora(model, adapter_name)
        raise ValueError(f"directory: {weights_path} lacks LoRA weights for {missing[:5]}")
    if not trainable:
        for p in model.parameters():
            p.requires_grad_(False)
    return model
