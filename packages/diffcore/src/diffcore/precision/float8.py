"""Float8 training through torchao: the linear layers of a network run their three matmuls in float8.

``torchao.float8.convert_to_float8_training`` swaps chosen ``nn.Linear`` layers for ``Float8Linear``, which
casts the input, the weight and the output gradient to float8 e4m3 with dynamic scales and multiplies on the
float8 tensor cores (twice the bf16 peak on an H100: 1979 against 989 dense TFLOPS). The weights, their
gradients and the optimizer state stay in the precision the model has; the parameters are the same objects
(an optimizer built before the conversion still holds them) and the state-dict keys are unchanged, so
checkpoints, EMA and ``save_pretrained`` see a plain model. Recipes (torchao's names):

- ``tensorwise``: one scale per tensor, cuBLAS's float8 matmul; the fastest.
- ``rowwise``: one scale per row of each operand (power-of-two scales), CUTLASS's rowwise matmul; closer to
  bf16 where a few rows hold outliers.

Layers that stay in the model's precision, by name (:data:`KEEP_IN_BF16`, each with its reason) and by shape
(a dimension that is not a multiple of 16, which the float8 matmul cannot take): the plan
(:func:`float8_plan`) names every linear layer and says which is converted and why the others are kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffcore.precision.quantize import fp8_unavailable_reason, kept_by
from diffcore.precision.recipes import FLOAT8_RECIPES, Float8Recipe

__all__ = [
    "FLOAT8_RECIPES",
    "KEEP_IN_BF16",
    "Float8Plan",
    "Float8Recipe",
    "convert_to_float8",
    "float8_for_training",
    "float8_plan",
    "restore_linear",
]


# Name fragment -> why a linear layer whose qualified name holds it stays in the model's precision.
KEEP_IN_BF16: dict[str, str] = {
    "embed": "an embedding or conditioning MLP (patchify, time, label, pooled text, context): one row per "
    "sample or a thin input, too few FLOPs to gain, and its error reaches every block",
    "modulation": "adaLN modulation: B rows (one per sample, not B x N tokens), so float8's casts cost more "
    "than its matmul saves, and its output scales the whole residual stream",
    "emb_layers": "a U-Net time-embedding projection: B rows, as adaLN modulation",
    "final_layer": "the output projection: its error goes straight into the prediction",
}
_ALIGN = 16  # float8 matmuls need both dimensions of the weight to be multiples of 16


@dataclass(frozen=True)
class Float8Plan:
    """Which linear layers of a network train in float8.

    Attributes:
        recipe: ``tensorwise`` or ``rowwise``.
        converted: qualified names of the layers converted to ``Float8Linear``.
        kept: qualified name -> why that linear layer stays in the model's precision.
        float8_fraction: the converted layers' share of all linear weights (parameter count).
    """

    recipe: str
    converted: tuple[str, ...]
    kept: dict[str, str]
    float8_fraction: float


def float8_plan(
    model: nn.Module, recipe: str = "tensorwise", keep: Mapping[str, str] = KEEP_IN_BF16
) -> Float8Plan:
    """The plan for ``model``: every ``nn.Linear`` is converted unless a dotted part of its name contains a
    fragment of ``keep`` (name fragment -> reason) or its weight ``(out, in)`` has a side not a multiple of 16."""
    _check_recipe(recipe, allow_none=False)
    converted: list[str] = []
    kept: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        sizes[name] = module.weight.numel()
        fragment = kept_by(name, keep)
        out_features, in_features = module.weight.shape
        if fragment is not None:
            kept[name] = keep[fragment]
        elif out_features % _ALIGN or in_features % _ALIGN:
            kept[name] = f"weight {out_features} x {in_features}: float8 matmuls need multiples of {_ALIGN}"
        else:
            converted.append(name)
    fraction = sum(sizes[n] for n in converted) / max(sum(sizes.values()), 1)
    return Float8Plan(recipe, tuple(converted), kept, fraction)


def convert_to_float8(
    model: nn.Module,
    recipe: str = "tensorwise",
    *,
    keep: Mapping[str, str] = KEEP_IN_BF16,
    check_device: bool = True,
) -> Float8Plan:
    """Swap the linear layers :func:`float8_plan` chooses for torchao's ``Float8Linear``, in place.

    Convert before ``torch.compile`` and before DDP wraps the model (the Trainer does it in that order). With
    ``check_device`` the model must sit on a GPU that runs float8 matmuls (compute capability 8.9+); without
    it the modules are swapped wherever the model is (their forward then needs such a GPU).

    Raises:
        ValueError: an unknown ``recipe``; no float8-capable GPU (with ``check_device``); nothing to convert.
        ImportError: torchao is missing (``pip install diffcore[quant]``).
    """
    plan = float8_plan(model, recipe, keep)
    if check_device:
        reason = fp8_unavailable_reason(_device_of(model))
        if reason is not None:
            raise ValueError(f"float8: {reason}")
    if not plan.converted:
        raise ValueError(
            f"float8: {type(model).__name__} has no linear layer to convert (kept: {sorted(plan.kept)})"
        )
    float8 = _torchao_float8()
    chosen = set(plan.converted)
    float8.convert_to_float8_training(
        model,
        module_filter_fn=lambda module, name: name in chosen,
        config=float8.Float8LinearConfig.from_recipe_name(recipe),
    )
    return plan


def float8_for_training(model: nn.Module, recipe: str, device: torch.device | str) -> Float8Plan | None:
    """What the Trainer calls for ``TrainConfig.float8``: ``none`` does nothing; on a device without float8
    matmuls (the CPU, a GPU below compute capability 8.9) one warning line and the model trains in its
    configured precision (returns ``None``); else :func:`convert_to_float8` (returns its plan)."""
    _check_recipe(recipe, allow_none=True)
    if recipe == "none":
        return None
    reason = fp8_unavailable_reason(device)
    if reason is not None:
        warnings.warn(f"float8={recipe!r} is off for this run: {reason}", stacklevel=3)
        return None
    return convert_to_float8(model, recipe)


def restore_linear(model: nn.Module) -> nn.Module:
    """Swap every ``Float8Linear`` of ``model`` back to a plain ``nn.Linear`` holding the same parameters, in
    place (for a model used after training, such as the EMA copy); returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and type(child) is not nn.Linear and _is_float8(child):
                plain = nn.Linear(
                    child.in_features, child.out_features, bias=child.bias is not None, device="meta"
                )
                plain.weight, plain.bias = child.weight, child.bias
                setattr(parent, name, plain)
    return model


def _is_float8(module: nn.Module) -> bool:
    return type(module).__name__ == "Float8Linear" and type(module).__module__.startswith("torchao.")


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _check_recipe(recipe: str, *, allow_none: bool) -> None:
    allowed = FLOAT8_RECIPES if allow_none else FLOAT8_RECIPES[1:]
    if recipe not in allowed:
        raise ValueError(f"float8: expected one of {allowed}, got {recipe!r}")


def _torchao_float8() -> Any:
    try:
        import torchao.float8 as float8
    except ImportError as exc:
        raise ImportError(
            "float8: float8 training needs torchao, which is not installed; `pip install diffcore[quant]` "
            "(or set float8='none')"
        ) from exc
    return float8
