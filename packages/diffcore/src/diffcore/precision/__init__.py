"""Lower precision through torchao (``pip install diffcore[quant]``), in one place for training and sampling.

- :mod:`~diffcore.precision.float8`: float8 training of the linear layers (``TrainConfig.float8``), the layers
  kept in bf16 named with their reasons.
- :mod:`~diffcore.precision.quantize`: FP8 / INT8 weights (and activations) for inference
  (``quantize_weights``: sampling pipelines, streams, benchmarks).

torchao is imported only inside the functions that need it, and torch only when a name of this package is first
used (PEP 562 ``__getattr__``): ``TrainConfig`` names the float8 recipes (:mod:`~diffcore.precision.recipes`)
without loading torch, so ``diffuse --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from diffcore.precision.recipes import FLOAT8_RECIPES, QUANTIZATIONS, Float8Recipe, Quantization

if TYPE_CHECKING:
    from diffcore.precision.float8 import (
        KEEP_IN_BF16,
        Float8Plan,
        convert_to_float8,
        float8_for_training,
        float8_plan,
        restore_linear,
    )
    from diffcore.precision.quantize import (
        FP8_MIN_CAPABILITY,
        fp8_unavailable_reason,
        quantize_weights,
    )

__all__ = [
    "FLOAT8_RECIPES",
    "FP8_MIN_CAPABILITY",
    "KEEP_IN_BF16",
    "QUANTIZATIONS",
    "Float8Plan",
    "Float8Recipe",
    "Quantization",
    "convert_to_float8",
    "float8_for_training",
    "float8_plan",
    "fp8_unavailable_reason",
    "quantize_weights",
    "restore_linear",
]

_SOURCE = {
    **dict.fromkeys(("KEEP_IN_BF16", "Float8Plan", "convert_to_float8", "float8_for_training", "float8_plan",
                     "restore_linear"), "float8"),
    **dict.fromkeys(("FP8_MIN_CAPABILITY", "fp8_unavailable_reason", "quantize_weights"), "quantize"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Load the submodule that defines ``name`` (and torch with it) on first use."""
    if name in _SOURCE:
        return getattr(importlib.import_module(f"diffcore.precision.{_SOURCE[name]}"), name)
    raise AttributeError(f"module 'diffcore.precision' has no attribute {name!r}")
