"""Self-attention straight from a fused q/k/v projection, in Triton (FlashAttention-2 style).

``qkv_attention(qkv)`` takes the ``(B, N, 3, H, Dh)`` output of one q/k/v linear and returns
``softmax(q k^T / sqrt(Dh)) v`` as ``(B, N, H * Dh)``, the layout the output projection reads. Two
things differ from ``scaled_dot_product_attention`` on the views ``q, k, v = qkv.unbind(2)``:

- The head dimension is split into a power of two and a tail padded to 16 (72 = 64 + 16): the matrix
  products run 80 wide where a kernel with power-of-two tiles (cuDNN, FlashAttention) runs 128 wide.
- The backward writes ``d qkv`` in the ``(B, N, 3, H, Dh)`` layout the linear's backward reads, so no
  stack/transpose copy of the three gradients is needed.

Forward: online softmax over key blocks, saving the log-sum-exp per query. Backward: ``delta =
rowsum(dO * O)``, then one kernel per key block for ``dK, dV`` and one per query block for ``dQ``
(Dao 2023, "FlashAttention-2", Algorithm 2). No mask, no dropout; any ``N``; ``Dh >= 16``.
:func:`qkv_attention_reference` is the same through SDPA. Under ``torch.compile`` the kernels are
``torch.library`` custom ops (``diffcore::qkv_attention`` / ``qkv_attention_backward``), opaque to the
compiler; eagerly, the same functions run in a plain ``autograd.Function``
(:mod:`diffcore.kernels._custom_ops`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from diffcore.kernels._custom_ops import custom_op, eager_function, fused_op
from diffcore.kernels._triton import HAS_TRITON, INTERPRET, on_device, triton_runs_on

__all__ = ["fused_attention_available", "head_split", "qkv_attention", "qkv_attention_reference"]

_LOG2E = 1.4426950408889634
DELTA_ROWS = 64  # (token, head) rows per program of the backward's rowsum(dO * O)


def head_split(head_dim: int) -> tuple[int, int]:
    """``(D0, D1)``: the largest power of two ``<= head_dim`` and the tail's width padded to a power of
    two ``>= 16`` (0 when there is no tail). ``72 -> (64, 16)``, ``64 -> (64, 0)``, ``96 -> (64, 32)``."""
    if head_dim < 16:
        raise ValueError(f"head_dim: the Triton attention needs at least 16, got {head_dim}")
    d0 = 1 << (head_dim.bit_length() - 1)
    rest = head_dim - d0
    return d0, (0 if rest == 0 else max(16, 1 << (rest - 1).bit_length()))


def qkv_attention_reference(qkv: Tensor) -> Tensor:
    """:func:`qkv_attention` through SDPA: ``(B, N, 3, H, Dh)`` -> ``(B, N, H * Dh)``."""
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


@torch.compiler.assume_constant_result
def fused_attention_available() -> bool:
    """Whether Triton is installed (the fused path also needs CUDA tensors); registers the custom ops."""
    if HAS_TRITON:
        _define_ops()
    return HAS_TRITON


def qkv_attention(qkv: Tensor, fused: bool = True) -> Tensor:
    """Self-attention of ``qkv`` ``(B, N, 3, H, Dh)`` -> ``(B, N, H * Dh)``; Triton when ``fused`` and the kernels
    run on ``qkv`` (:func:`~diffcore.kernels.triton_runs_on`) with ``Dh >= 16``, SDPA otherwise."""
    if qkv.ndim != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv: expected (B, N, 3, H, Dh), got shape {tuple(qkv.shape)}")
    if not (fused and triton_runs_on(qkv) and qkv.shape[-1] >= 16 and fused_attention_available()):
        return qkv_attention_reference(qkv)
    op = fused_op("qkv_attention")
    out, _ = op(qkv.contiguous())
    return out


@functools.cache
def _define_ops() -> None:
    import triton

    from diffcore.kernels._attention_triton import (
        backward_dkdv_kernel,
        backward_dq_kernel,
        delta_kernel,
        forward_kernel,
    )

    if INTERPRET:  # the CPU interpreter (tests): one fixed configuration
        fwd, dkdv, dq = forward_kernel, backward_dkdv_kernel, backward_dq_kernel
        fixed = {"BLOCK_M": 16, "BLOCK_N": 16}
    else:  # on a GPU: time tile sizes, warps and pipeline depth once per shape, keep the fastest
        configs = [
            triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n in ((64, 64), (128, 64), (64, 128), (128, 128))
            for w in (4, 8)
            for s in (2, 3)
        ]
        fwd, dkdv, dq = (
            triton.autotune(configs, key=["N", "H", "DH"])(k)
            for k in (forward_kernel, backward_dkdv_kernel, backward_dq_kernel)
        )
        fixed = {}

    def grid(axis_block: str, n: int, bh: int):
        return lambda meta: (triton.cdiv(n, meta[axis_block]), bh)

    def qkv_attention_forward(qkv: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _, h, dh = qkv.shape
        d0, d1 = head_split(dh)
        out = qkv.new_empty(b, n, h * dh)
        lse = torch.empty(b * h, n, device=qkv.device, dtype=torch.float32)
        with on_device(qkv):
            fwd[grid("BLOCK_M", n, b * h)](
                qkv, out, lse, n, h, _LOG2E / math.sqrt(dh), DH=dh, D0=d0, D1=d1, **fixed
            )
        return out, lse

    def qkv_attention_fake(qkv):
        b, n, _, h, dh = qkv.shape
        return qkv.new_empty(b, n, h * dh), qkv.new_empty(b * h, n, dtype=torch.float32)

    def qkv_attention_backward(grad_out: Tensor, qkv: Tensor, out: Tensor, lse: Tensor) -> Tensor:
        b, n, _, h, dh = qkv.shape
        d0, d1 = head_split(dh)
        grad_out = grad_out.contiguous()
        delta = torch.empty_like(lse)  # rowsum(dO * O) per (b, h, query), laid out like lse
        dqkv = torch.empty_like(qkv)
        args = (qkv, grad_out, lse, delta, dqkv, n, h, _LOG2E / math.sqrt(dh), 1 / math.sqrt(dh))
        with on_device(qkv):
            rows = b * n * h
            delta_kernel[(triton.cdiv(rows, DELTA_ROWS),)](
                out, grad_out, delta, n, h, rows, ROWS=DELTA_ROWS, DH=dh, D0=d0, D1=d1
            )
            dkdv[grid("BLOCK_N", n, b * h)](*args, DH=dh, D0=d0, D1=d1, **fixed)
            dq[grid("BLOCK_M", n, b * h)](*args, DH=dh, D0=d0, D1=d1, **fixed)
        return dqkv

    def qkv_attention_backward_fake(grad_out, qkv, out, lse):
        return torch.empty_like(qkv)

    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0], *output)

    def backward_through(kernels):
        """The autograd backward, running the backward kernels through ``kernels`` (op or function)."""

        def backward(ctx, grad_out, _grad_lse):
            qkv, out, lse = ctx.saved_tensors
            return kernels(grad_out, qkv, out, lse)

        return backward

    backward_op = custom_op("qkv_attention_backward", qkv_attention_backward, qkv_attention_backward_fake)
    custom_op(
        "qkv_attention",
        qkv_attention_forward,
        qkv_attention_fake,
        setup_context,
        backward_through(backward_op),
    )
    # out carries gradients; lse (log-sum-exp per query) is saved for the backward.
    eager_function(
        "qkv_attention", qkv_attention_forward, setup_context, backward_through(qkv_attention_backward), (0,)
    )
