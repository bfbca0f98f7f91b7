"""Inference with FP8 / INT8 weights through torchao: :func:`quantize_weights` on any network.

Used by sampling pipelines (``ImageSampleConfig.quantize``), streams (``StreamConfig.quantize``) and the
benchmarks. Quantisation uses torchao (``pip install diffcore[quant]``), an optional dependency imported only
when asked for: ``quantize_`` replaces the ``nn.Linear`` weights of a module in place by tensor subclasses
(StreamDiffusion builds TensorRT engines by hand instead; a kept library does the same job here). The modes
(all per output channel, symmetric):

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

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from diffcore.precision.recipes import QUANTIZATIONS, Quantization

__all__ = [
    "FP8_MIN_CAPABILITY",
    "QUANTIZATIONS",
    "Quantization",
    "fp8_unavailable_reason",
    "kept_by",
    "quantize_weights",
]


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


def fp8_unavailable_reason(device: torch.device | str) -> str | None:
    """Why float8 matmuls cannot run on ``device`` (a sentence), or ``None`` where they can: a CUDA GPU of
    compute capability :data:`FP8_MIN_CAPABILITY` or newer (Ada 8.9, Hopper 9.0)."""
    device = torch.device(device)
    if device.type != "cuda":
        return (
            f"float8 matmuls need a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper), not {device}"
        )
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_MIN_CAPABILITY:
        return (
            f"float8 matmuls need a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); {device} has "
            f"{major}.{minor}"
        )
    return None


def _check_device(module: nn.Module, mode: str) -> None:
    """Refuse ``fp8`` (float8 matmuls) on a device that has none, before torchao fails deep inside."""
    if mode != "fp8":
        return
    linear = next(m for m in module.modules() if isinstance(m, nn.Linear))
    device = linear.weight.device
    if fp8_unavailable_reason(device) is None:
        return
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    where = f"{device} (compute capability {capability[0]}.{capability[1]})" if capability else str(device)
    raise ValueError(
        f"quantize: 'fp8' runs float8 matmuls, which need a CUDA GPU of compute capability 8.9 or newer "
        f"(Ada, Hopper); the network is on {where}: use 'fp8-weight', 'int8' or 'int8-weight' there"
    )


def quantize_weights(module: nn.Module, mode: Quantization, *, keep: Iterable[str] = ()) -> nn.Module:
    """Quantise ``module``'s ``nn.Linear`` weights in place with torchao (``mode``: :data:`QUANTIZATIONS`, module
    docstring); ``none`` returns it unchanged. Quantise on the device the network will run on. Returns
    ``module``, whose linear weights are then torchao tensor subclasses (``weight.dequantize()`` gives the
    quantised values back in float). ``keep``: name fragments of linear layers left as they are (a layer whose
    qualified name has a dotted part containing one, as in :func:`diffcore.precision.float8.float8_plan`;
    :data:`~diffcore.precision.float8.KEEP_IN_BF16` keeps embeddings, adaLN modulation and the output layer).

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
    fragments = tuple(keep)
    config = getattr(quantization, _TORCHAO_CONFIGS[mode])()
    quantization.quantize_(module, config, filter_fn=lambda m, name: _quantized(m, name, fragments))
    return module


def kept_by(name: str, fragments: Iterable[str]) -> str | None:
    """The first of ``fragments`` found in a dotted part of the qualified module ``name``, else ``None``."""
    parts = name.split(".")
    return next((f for f in fragments if any(f in part for part in parts)), None)


def _quantized(module: nn.Module, name: str, keep: tuple[str, ...]) -> bool:
    return isinstance(module, nn.Linear) and kept_by(name, keep) is None
