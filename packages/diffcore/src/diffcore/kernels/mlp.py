"""The transformer MLP ``fc2(gelu_tanh(fc1(x)))`` with bias and GELU in the first matmul's epilogue.

Forward: one cuBLASLt matmul writes ``gelu(h)`` and keeps ``h = fc1(x)`` for the backward
(``GELU_AUX_BIAS``), then ``fc2``; unfused, GELU is an extra pass that reads ``h`` back over the
``(tokens, 4 * dim)`` hidden activations. Backward: plain torch ops (which ``torch.compile`` traces and
fuses). cuBLASLt's matching backward epilogue (``DGELU_BGRAD``,
:func:`~diffcore.kernels.cublaslt.matmul_dgelu_bgrad`) ran as a separate, slower kernel on an H100 (measured
in docs/diffcore.md), so it is not used here. :func:`gelu_mlp` takes this path for bf16/fp16 CUDA tensors
(autocast included) when cuBLASLt loads, and plain torch ops otherwise; the two agree to bf16 rounding
(tests). Under ``torch.compile`` the forward is a ``torch.library`` custom op (``diffcore::gelu_mlp``),
opaque to the compiler; eagerly, the same function runs in a plain ``autograd.Function``
(:mod:`diffcore.kernels._custom_ops`), which gives the saved activations no zero-filled gradients. Double
backward is not supported.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.kernels import cublaslt
from diffcore.kernels._custom_ops import custom_op, eager_function, fused_op

__all__ = ["gelu_mlp", "gelu_mlp_reference", "gelu_mlp_runs_on"]


def gelu_mlp_reference(x: Tensor, fc1: nn.Linear, fc2: nn.Linear) -> Tensor:
    """``fc2(gelu_tanh(fc1(x)))`` in plain torch ops."""
    return fc2(F.gelu(fc1(x), approximate="tanh"))


def gelu_mlp_runs_on(x: Tensor, fc1: nn.Module, fc2: nn.Module) -> bool:
    """Whether :func:`gelu_mlp` takes the cuBLASLt path: ``x`` a non-empty bf16 or fp16 CUDA tensor (as under
    autocast), ``fc1`` and ``fc2`` plain ``nn.Linear`` layers with biases (a layer wrapped by an adapter, such as
    PEFT's LoRA, or a subclass with its own matmul, such as torchao's ``Float8Linear``, runs its own forward
    instead) and cuBLASLt loaded."""
    return (
        type(fc1) is nn.Linear
        and type(fc2) is nn.Linear
        and x.is_cuda
        and x.dtype in (torch.bfloat16, torch.float16)
        and fc1.bias is not None
        and fc2.bias is not None
        and x.numel() > 0
        and cublaslt.available()
    )


def gelu_mlp(x: Tensor, fc1: nn.Linear, fc2: nn.Linear, fused: bool = True) -> Tensor:
    """``fc2(gelu_tanh(fc1(x)))`` for ``x`` ``(..., dim)``; cuBLASLt's GELU epilogue on CUDA when ``fused``.

    The fused path is taken where :func:`gelu_mlp_runs_on`; the weights are then cast to ``x.dtype`` as
    autocast's ``nn.Linear`` would. Elsewhere: :func:`gelu_mlp_reference`. The custom op is registered on
    first use (:func:`register`, which ``torch.compile`` runs eagerly while tracing).
    """
    if not (fused and gelu_mlp_runs_on(x, fc1, fc2)):
        return gelu_mlp_reference(x, fc1, fc2)
    register()
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    weights = (fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    op = fused_op("gelu_mlp")
    y, _, _ = op(flat, *(w.to(x.dtype).contiguous() for w in weights))
    return y.view(*x.shape[:-1], y.shape[-1])


@torch.compiler.assume_constant_result
def register() -> bool:
    """Register the ``diffcore::gelu_mlp`` custom op (once; a constant to ``torch.compile``)."""
    _define_ops()
    return True


@functools.cache
def _define_ops() -> None:
    def gelu_mlp_forward(
        x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        a, h = cublaslt.linear_gelu_aux(x, w1, b1)
        return torch.addmm(b2, a, w2.t()), a, h

    def gelu_mlp_fake(x, w1, b1, w2, b2):
        hidden = x.new_empty(x.shape[0], w1.shape[0])
        return x.new_empty(x.shape[0], w2.shape[0]), hidden, torch.empty_like(hidden)

    def setup_context(ctx, inputs, output) -> None:
        x, w1, _, w2, _ = inputs
        _, a, h = output
        ctx.save_for_backward(x, w1, w2, a, h)

    def backward(ctx, grad_y, _grad_a, _grad_h):
        # Plain torch ops, which torch.compile traces and fuses (GELU's backward with the bias sum).
        x, w1, w2, a, h = ctx.saved_tensors
        grad_h = torch.ops.aten.gelu_backward(grad_y @ w2, h, approximate="tanh")
        return grad_h @ w1, grad_h.t() @ x, grad_h.sum(0), grad_y.t() @ a, grad_y.sum(0)

    custom_op("gelu_mlp", gelu_mlp_forward, gelu_mlp_fake, setup_context, backward)
    # y carries gradients; a = gelu(h) and h are saved activations (no zero-filled gradients for them).
    eager_function("gelu_mlp", gelu_mlp_forward, setup_context, backward, (0,))
