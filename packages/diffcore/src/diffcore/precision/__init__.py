"""Lower precision through torchao (``pip install diffcore[quant]``), in one place for training and sampling.

- :mod:`~diffcore.precision.float8`: float8 training of the linear layers (``TrainConfig.float8``), the layers
  kept in bf16 named with their reasons.
- :mod:`~diffcore.precision.quantize`: FP8 / INT8 weights (and activations) for inference
  (``quantize_weights``: sampling pipelines, streams, benchmarks).

torchao is imported only inside the functions that need it.
"""

from diffcore.precision.float8 import (
    FLOAT8_RECIPES,
    KEEP_IN_BF16,
    Float8Plan,
    Float8Recipe,
    convert_to_float8,
    float8_for_training,
    float8_plan,
    restore_linear,
)
from diffcore.precision.quantize import (
    FP8_MIN_CAPABILITY,
    QUANTIZATIONS,
    Quantization,
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
