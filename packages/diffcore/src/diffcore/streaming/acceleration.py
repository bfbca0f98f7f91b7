"""Making a stream fast: ``torch.compile`` of its parts, and FP8 / INT8 weights through torchao.

CUDA graphs of a whole stream step live in :class:`diffcore.kernels.cuda_graphs.GraphedInference` (used by
:class:`diffcore.streaming.FrameStream`). The quantisation is the core's one (:mod:`diffcore.precision.quantize`),
re-exported here for the stream's configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffcore.precision.quantize import FP8_MIN_CAPABILITY, QUANTIZATIONS, Quantization, quantize_weights

__all__ = ["FP8_MIN_CAPABILITY", "QUANTIZATIONS", "Quantization", "compiled", "quantize_weights"]


def compiled(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """``torch.compile(fn)`` (``mode``: torch's, e.g. ``max-autotune-no-cudagraphs``; None: the default), with
    ``fullgraph`` off so a network with a graph break still compiles. CUDA graphs are applied by the stream
    around the whole step, so a mode that adds its own (``reduce-overhead``) is not needed."""
    return torch.compile(fn, mode=mode)
