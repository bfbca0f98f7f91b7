"""The names of the float8 training recipes and of the inference quantisations, apart from the code that needs
torch (``TrainConfig`` and the modality configs read them; :mod:`~diffcore.precision.float8` and
:mod:`~diffcore.precision.quantize` say what each does).

Float8 recipes: ``tensorwise`` (one scale per tensor, torchao's default), ``rowwise`` (one scale per row of each
operand), ``none``. Quantisations: ``int8-weight``, ``int8`` (weights and activations), ``fp8-weight``, ``fp8``,
``none``.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["FLOAT8_RECIPES", "QUANTIZATIONS", "Float8Recipe", "Quantization"]

Float8Recipe = Literal["none", "tensorwise", "rowwise"]
FLOAT8_RECIPES: tuple[str, ...] = ("none", "tensorwise", "rowwise")
Quantization = Literal["none", "int8", "int8-weight", "fp8", "fp8-weight"]
QUANTIZATIONS: tuple[str, ...] = ("none", "int8", "int8-weight", "fp8", "fp8-weight")
