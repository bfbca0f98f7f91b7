"""One definition, two front doors, for diffcore's fused operators.

Each fused operator is written once as plain functions (``forward(*inputs) -> outputs``, a
``setup_context`` that saves what the backward needs, and a ``backward``) and reached two ways:

- under ``torch.compile``, as a ``torch.library`` custom op (:func:`custom_op`): an opaque graph node
  with a fake (meta) implementation, which is what tracing needs;
- in eager mode, as a plain ``torch.autograd.Function`` (:func:`eager_function`). A custom op's eager
  call goes through the dispatcher and the autograd wrapper that ``register_autograd`` builds, tens of
  microseconds of host time per call, and autograd then materialises a zero gradient for every output
  the loss does not use (saved statistics, the MLP's hidden activations: large tensors). A small model
  at a small batch is host-bound, so that cost is its step time. The ``Function`` marks the auxiliary
  outputs non-differentiable and materialises nothing.

The fused layers call :func:`fused_op`, which picks the door with ``torch.compiler.is_compiling()``, so
compiled graphs hold exactly the custom ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["EAGER", "custom_op", "eager_function", "fused_op"]

EAGER: dict[str, Callable[..., tuple[Tensor, ...]]] = {}
"""The eager entry points by op name (``"adaln_forward"`` ...), filled when each module defines its ops."""


def eager_function(
    name: str,
    forward: Callable[..., tuple[Tensor, ...]],
    setup_context: Callable[[Any, tuple[Any, ...], tuple[Tensor, ...]], None],
    backward: Callable[..., tuple[Tensor | None, ...]],
    differentiable: Sequence[int],
) -> Callable[..., tuple[Tensor, ...]]:
    """``forward`` and ``backward`` as a ``torch.autograd.Function``; returns (and files in :data:`EAGER`) its
    ``apply``.

    ``forward(*inputs)`` returns a tuple of tensors; ``differentiable`` lists the indices of the outputs that
    carry gradients (the others are saved statistics or activations). ``backward(ctx, *grads)`` gets one
    gradient per output (a zero tensor for a differentiable output the loss did not use, ``None`` for the
    others) and returns one gradient (or ``None``) per input, as a custom op's ``register_autograd`` does.
    """
    keep = frozenset(differentiable)

    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: Any) -> tuple[Tensor, ...]:
            outputs = forward(*inputs)
            setup_context(ctx, inputs, outputs)
            ctx.mark_non_differentiable(*(o for i, o in enumerate(outputs) if i not in keep))
            ctx.set_materialize_grads(False)
            # Shapes only: an output kept on ctx would hold itself alive through its own grad_fn.
            ctx.like = tuple(
                (o.shape, o.dtype, o.device) if i in keep else None for i, o in enumerate(outputs)
            )
            return outputs

        @staticmethod
        def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
            grads = tuple(
                torch.zeros(like[0], dtype=like[1], device=like[2]) if g is None and like is not None else g
                for g, like in zip(grads, ctx.like, strict=True)
            )
            return backward(ctx, *grads)

    Eager.__name__ = Eager.__qualname__ = "".join(p.title() for p in name.split("_")) + "Eager"
    EAGER[name] = Eager.apply
    return Eager.apply


def custom_op(
    name: str,
    forward: Callable[..., Any],
    fake: Callable[..., Any],
    setup_context: Callable[[Any, tuple[Any, ...], Any], None] | None = None,
    backward: Callable[..., Any] | None = None,
) -> Any:
    """Register ``forward`` as the custom op ``diffcore::<name>`` with ``fake`` and (optionally) autograd.

    ``forward`` keeps its identity (``torch.library`` wraps it in a new object), so the eager path and a
    backward can call it directly.
    """
    op = torch.library.custom_op(f"diffcore::{name}", mutates_args=())(forward)
    op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    return op


def fused_op(name: str) -> Callable[..., tuple[Tensor, ...]]:
    """The entry point of op ``name``: ``torch.ops.diffcore.<name>`` while ``torch.compile`` traces, the eager
    ``autograd.Function`` otherwise (the op's module must have defined it)."""
    if torch.compiler.is_compiling():
        return getattr(torch.ops.diffcore, name)
    return EAGER[name]
