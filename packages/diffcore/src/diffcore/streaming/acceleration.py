"""Making a stream fast: ``torch.compile`` of its parts and FP8 / INT8 weights through torchao.

CUDA graphs of a whole stream step live in :class:`diffcore.kernels.cuda_graphs.GraphedInference` (used by
:class:`diffcore.streaming.FrameStream`). Quantisation uses torchao (``pip install torchao``), an optional
dependency imported only when asked for: ``quantize_`` replaces the ``nn.Linear`` weights of a module in place
(StreamDiffusion builds TensorRT engines by hand instead; a kept library does the same job here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["QUANTIZATIONS", "Quantization", "compiled", "quantize_weights"]

Quantization = Literal["none", "int8", "int8-weight", "fp8", "fp8-weight"]
QUANTIZATIONS: tuple[str, ...] = ("none", "int8", "int8-weight", "fp8", "fp8-weight")

_TORCHAO_CONFIGS = {
    "int8": "Int8DynamicActivationInt8WeightConfig",  # int8 weights, int8 activations per token
    "int8-weight": "Int8WeightOnlyConfig",
    "fp8": "Float8DynamicActivationFloat8WeightConfig",  # e4m3 weights and activations (Hopper and newer)
    "fp8-weight": "Float8WeightOnlyConfig",
}


def _torchao_quantization() -> Any:
    try:
        import torchao.quantization as quantization
    except ImportError as exc:
        raise ImportError(
            "quantize: FP8 / INT8 weights need torchao, which is not installed; `pip install torchao` "
            "(or use quantize='none')"
        ) from exc
    return quantization


def quantize_weights(module: nn.Module, mode: Quantization) -> nn.Module:
    """Quantise ``module``'s linear weights in place with torchao (``mode``: :data:`QUANTIZATIONS`); ``none``
    returns it unchanged. Returns ``module``.

    Raises:
        ValueError: an unknown ``mode``. ImportError: torchao is missing (a ``mode`` other than ``none``).
    """
    if mode not in QUANTIZATIONS:
        raise ValueError(f"quantize: expected one of {QUANTIZATIONS}, got {mode!r}")
    if mode == "none":
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"quantize: expected an nn.Module to quantise, got {type(module).__name__}")
    quantization = _torchao_quantization()
    quantization.quantize_(module, getattr(quantization, _TORCHAO_CONFIGS[mode])())
    return module


def compiled(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile(fn)`` (``mode``: torch's, e.g. ``max-autotune-no-cudagraphs``; None: the default), with
    ``fullgraph`` off so a network with a graph break still compiles. CUDA graphs are applied by the stream
    around the whole step, so a mode that adds its own (``reduce-overhead``) is not needed."""
    return torch.compile(fn, mode=mode)
