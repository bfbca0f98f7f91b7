"""Making a stream fast: ``torch.compile`` of its parts and FP8 / INT8 weights through torchao.

CUDA graphs of a whole stream step live in :class:`diffcore.kernels.cuda_graphs.GraphedInference` (used by
:class:`diffcore.streaming.FrameStream`). Quantisation uses torchao (``pip install diffcore[quant]``), an
optional dependency imported only when asked for: ``quantize_`` replaces the ``nn.Linear`` weights of a module in
place by tensor subclasses (StreamDiffusion builds TensorRT engines by hand instead; a kept library does the same
job here). The modes (all per output channel, symmetric):

- ``int8-weight``: int8 weights, ``s = max|w_row| / 127.5``; the matmul runs in the activation dtype on the
  dequantised weight. Runs on CPU and GPU.
- ``int8``: the same int8 weights and int8 activations per token (``s = max|x_token| / 127``), an int8 matmul.
  Runs on CPU and GPU.
- ``fp8-weight``: float8 e4m3 weights, ``s = max|w_row| / 448``; dequantised for the matmul, so it runs on CPU too
  (on a GPU it saves memory, not matmul time).
- ``fp8``: e4m3 weights and activations, a float8 matmul: a CUDA GPU of compute capability 8.9 or newer (Ada,
  Hopper); elsewhere :func:`quantize_weights` refuses it with one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["FP8_MIN_CAPABILITY", "QUANTIZATIONS", "Quantization", "compiled", "quantize_weights"]

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
            "quantize: FP8 / INT8 weights need torchao, which is not installed; `pip install diffcore[quant]` "
            "(or use quantize='none')"
        ) from exc
    return quantization


FP8_MIN_CAPABILITY = (8, 9)  # float8 tensor-core matmuls: Ada (8.9), Hopper (9.0) and newer


def _check_device(module: nn.Module, mode: str) -> None:
    """Refuse ``fp8`` (float8 matmuls) on a device that has none, before torchao fails deep inside."""
    if mode != "fp8":
        return
    linear = next(m for m in module.modules() if isinstance(m, nn.Linear))
    device = linear.weight.device
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if capability is None or tuple(capability) < FP8_MIN_CAPABILITY:
        where = (
            f"{device} (compute capability {capability[0]}.{capability[1]})" if capability else str(device)
        )
        raise ValueError(
            f"quantize: 'fp8' runs float8 matmuls, which need a CUDA GPU of compute capability 8.9 or newer "
            f"(Ada, Hopper); the network is on {where}: use 'fp8-weight', 'int8' or 'int8-weight' there"
        )


def quantize_weights(module: nn.Module, mode: Quantization) -> nn.Module:
    """Quantise ``module``'s ``nn.Linear`` weights in place with torchao (``mode``: :data:`QUANTIZATIONS`, module
    docstring); ``none`` returns it unchanged. Quantise on the device the network will run on. Returns
    ``module``, whose linear weights are then torchao tensor subclasses (``weight.dequantize()`` gives the
    quantised values back in float).

    Raises:
        ValueError: an unknown ``mode``; a module without ``nn.Linear`` layers; ``fp8`` off a CUDA GPU of compute
            capability 8.9+. ImportError: torchao is missing (a ``mode`` other than ``none``).
    """
    if mode not in QUANTIZATIONS:
        raise ValueError(f"quantize: expected one of {QUANTIZATIONS}, got {mode!r}")
    if mode == "none":
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"quantize: expected an nn.Module to quantise, got {type(module).__name__}")
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise ValueError(
            f"quantize: expected a network with nn.Linear layers (the weights torchao quantises), "
            f"{type(module).__name__} has none"
        )
    _check_device(module, mode)
    quantization = _torchao_quantization()
    quantization.quantize_(module, getattr(quantization, _TORCHAO_CONFIGS[mode])())
    return module


def compiled(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile(fn)`` (``mode``: torch's, e.g. ``max-autotune-no-cudagraphs``; None: the default), with
    ``fullgraph`` off so a network with a graph break still compiles. CUDA graphs are applied by the stream
    around the whole step, so a mode that adds its own (``reduce-overhead``) is not needed."""
    return torch.compile(fn, mode=mode)
