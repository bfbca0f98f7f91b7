"""Where diffcore's Triton kernels can run, and the device context of a launch."""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch
from torch import Tensor

__all__ = ["HAS_TRITON", "INTERPRET", "on_device", "triton_runs_on"]

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
"""Triton's CPU interpreter is on (``TRITON_INTERPRET=1``, read once at import, as Triton does): the kernels
then run on float32 CPU tensors, slowly, with one fixed tile configuration. The tests use it. (The
interpreter computes in numpy, which has no bfloat16: its bf16 matrix products are wrong, so other dtypes
keep the plain torch ops on the CPU.)"""


def triton_runs_on(t: Tensor) -> bool:
    """Whether the Triton kernels can run on ``t``: Triton installed, and ``t`` on a CUDA GPU (or a float32 CPU
    tensor under Triton's interpreter, :data:`INTERPRET`)."""
    return HAS_TRITON and (t.is_cuda or (INTERPRET and t.dtype == torch.float32))


def on_device(t: Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s GPU the current one for a Triton launch (nothing to do on CPU: the interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
