"""The transformer MLP ``fc2(gelu_tanh(fc1(x)))`` with GELU and the bias gradient in cuBLASLt's epilogues.

Forward: one matmul writes ``gelu(h)`` and keeps ``h = fc1(x)`` (``GELU_AUX_BIAS``), then ``fc2``.
Backward: ``fc2``'s weight and bias gradients, then one matmul gives ``grad_h = (grad_y @ W2) * gelu'(h)``
and ``fc1``'s bias gradient (``DGELU_BGRAD``), then ``fc1``'s weight and input gradients. Unfused, the GELU
forward, its backward and the bias-gradient sum are three extra passes over the ``(tokens, 4 * dim)``
hidden activations (see docs/diffcore.md, "DiT throughput"). :func:`gelu_mlp` takes this path for
bf16/fp16 CUDA tensors (autocast included) when cuBLASLt loads, and plain torch ops otherwise; the two
agree to bf16 rounding (tests). The fused path is a ``torch.library`` custom op (``diffcore::gelu_mlp``),
opaque to ``torch.compile`` and without double backward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.nn import cublaslt

__all__ = ["gelu_mlp", "gelu_mlp_reference"]


def gelu_mlp_reference(x: Tensor, fc1: nn.Linear, fc2: nn.Linear) -> Tensor:
    """``fc2(gelu_tanh(fc1(x)))`` in plain torch ops."""
    return fc2(F.gelu(fc1(x), approximate="tanh"))


def gelu_mlp(x: Tensor, fc1: nn.Linear, fc2: nn.Linear, fused: bool = True) -> Tensor:
    """``fc2(gelu_tanh(fc1(x)))`` for ``x`` ``(..., dim)``; cuBLASLt epilogues on CUDA when ``fused``.

    The fused path needs bf16 or fp16 ``x`` (as under autocast) and linears with biases; the weights are
    cast to ``x.dtype`` as autocast's ``nn.Linear`` would. Call :func:`register` once before
    ``torch.compile`` traces it (the modules using it do so when built).
    """
    usable = (
        fused
        and x.is_cuda
        and x.dtype in (torch.bfloat16, torch.float16)
        and fc1.bias is not None
        and fc2.bias is not None
        and x.numel() > 0
        and cublaslt.available()
    )
    if not usable:
        return gelu_mlp_reference(x, fc1, fc2)
    register()
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    weights = (fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    y, _, _ = torch.ops.diffcore.gelu_mlp(flat, *(w.to(x.dtype).contiguous() for w in weights))
    return y.view(*x.shape[:-1], y.shape[-1])


@torch.compiler.assume_constant_result
def register() -> bool:
    """Register the ``diffcore::gelu_mlp`` custom op (once; a constant to ``torch.compile``)."""
    _define_ops()
    return True


@functools.cache
def _define_ops() -> None:
    @torch.library.custom_op("diffcore::gelu_mlp", mutates_args=())
    def gelu_mlp_op(
        x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        a, h = cublaslt.linear_gelu_aux(x, w1, b1)
        return torch.addmm(b2, a, w2.t()), a, h

    @gelu_mlp_op.register_fake
    def _(x, w1, b1, w2, b2):
        hidden = x.new_empty(x.shape[0], w1.shape[0])
        return x.new_empty(x.shape[0], w2.shape[0]), hidden, torch.empty_like(hidden)

    @torch.library.custom_op("diffcore::gelu_mlp_backward", mutates_args=())
    def gelu_mlp_backward(
        grad_y: Tensor, x: Tensor, w1: Tensor, w2: Tensor, a: Tensor, h: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        grad_y = grad_y.contiguous()
        grad_w2 = grad_y.t() @ a
        grad_b2 = grad_y.sum(0)
        grad_h, grad_b1 = cublaslt.matmul_dgelu_bgrad(grad_y, w2, h)
        return grad_h @ w1, grad_h.t() @ x, grad_b1, grad_w2, grad_b2

    @gelu_mlp_backward.register_fake
    def _(grad_y, x, w1, w2, a, h):
        return (
            torch.empty_like(x),
            torch.empty_like(w1),
            w1.new_empty(w1.shape[0]),
            torch.empty_like(w2),
            w2.new_empty(w2.shape[0]),
        )

    def setup_context(ctx, inputs, output) -> None:
        x, w1, _, w2, _ = inputs
        _, a, h = output
        ctx.save_for_backward(x, w1, w2, a, h)

    def backward(ctx, grad_y, _grad_a, _grad_h):
        return gelu_mlp_backward(grad_y, *ctx.saved_tensors)

    gelu_mlp_op.register_autograd(backward, setup_context=setup_context)
