"""Replay a module's training forward and backward from CUDA graphs.

Small networks on large GPUs are often limited by the host, not the device: every operator is a Python
call and a kernel launch of a few microseconds, and a step of a few thousand launches leaves the GPU idle
between them. A CUDA graph records the launches of one forward and one backward once and replays them as a
single launch (``torch.cuda.make_graphed_callables``). The price is static shapes: a graph is valid for
one set of input shapes, dtypes and devices, so batches should be padded to one length.

:class:`GraphedCall` wraps a function ``fn(module, *tensors) -> tuple[Tensor, ...]`` (the module's call as
a loss uses it) and captures one graph pair per input signature on first use, at most ``max_graphs``;
later signatures, evaluation mode, CPU tensors, autocast and DDP-wrapped modules run ``fn`` eagerly, so the
wrapper is always safe to call. Parameters are read in place, so optimizer steps, EMA and
``load_state_dict`` between calls need nothing special.

Limits (PyTorch's, documented in ``make_graphed_callables``): ``fn`` must be free of host syncs and of
data-dependent shapes and control flow; the inputs' ``requires_grad`` must match the first call's; and the
parameters' ``.grad`` may alias the graph's gradient buffers, so one backward per optimizer step with the
gradients reset to ``None`` in between (``zero_grad(set_to_none=True)``, PyTorch's default); and no autograd
graph of an earlier eager step may still be alive at the first graphed call (a loss kept in a variable holds
its parameters' gradient nodes, which remember the default stream, and the capture then fails). A graphed call
with gradients enabled while a parameter still holds a gradient raises instead of silently accumulating
wrong sums (gradient accumulation over several backward passes through the graph is not supported).

:class:`GraphedInference` is the inference counterpart: a function of some tensors (a whole sampling or
streaming step, network and arithmetic together) captured once as one forward graph and replayed with new
inputs copied into its static input buffers; no autograd, and the function may update buffers of its own in
place (a stream's state), which each replay repeats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["GraphedCall", "GraphedInference"]


class _Bound(nn.Module):
    """``forward(*tensors) = fn(module, *tensors)``: a fresh module per graph, so each capture replaces only
    its own ``forward`` (``make_graphed_callables`` rebinds the forward of the module it is given)."""

    def __init__(self, module: nn.Module, fn: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.module = module
        self._fn = fn

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        return tuple(self._fn(self.module, *tensors))


class GraphedCall:
    """``GraphedCall(fn)(module, *tensors)`` equals ``fn(module, *tensors)``, replayed from CUDA graphs.

    ``fn`` returns a tuple of tensors. ``max_graphs``: graph pairs kept (one per input signature);
    ``warmup_iters``: eager iterations before each capture (on a side stream, as PyTorch requires).
    Calls under ``torch.no_grad()`` replay the same forward graph (its outputs are then detached).
    """

    def __init__(
        self, fn: Callable[..., tuple[Tensor, ...]], max_graphs: int = 2, warmup_iters: int = 3
    ) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs: expected >= 1, got {max_graphs}")
        if warmup_iters < 1:
            raise ValueError(f"warmup_iters: expected >= 1, got {warmup_iters}")
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmup_iters = warmup_iters
        self._graphs: dict[tuple, nn.Module] = {}
        self._warned = False

    @property
    def num_graphs(self) -> int:
        """How many graph pairs have been captured."""
        return len(self._graphs)

    @staticmethod
    def graphable(module: nn.Module, tensors: tuple[Tensor, ...]) -> bool:
        """Whether this call can be replayed from a graph (else it runs eagerly)."""
        if not module.training or isinstance(module, nn.parallel.DistributedDataParallel):
            return False
        if not tensors or not all(t.is_cuda for t in tensors) or torch.is_autocast_enabled("cuda"):
            return False
        return all(p.is_cuda for p in module.parameters())

    def __call__(self, module: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
        if not self.graphable(module, tensors):
            return tuple(self.fn(module, *tensors))
        key = (id(module), *((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in tensors))
        graphed = self._graphs.get(key)
        if graphed is None:
            if len(self._graphs) >= self.max_graphs:
                if not self._warned:
                    warnings.warn(
                        f"GraphedCall: more than max_graphs={self.max_graphs} input signatures; new ones "
                        "run eagerly (pad batches to one shape to replay every step)",
                        stacklevel=2,
                    )
                    self._warned = True
                return tuple(self.fn(module, *tensors))
            graphed = self._capture(module, tensors)
            self._graphs[key] = graphed
        if torch.is_grad_enabled() and any(p.grad is not None for p in module.parameters()):
            raise RuntimeError(
                "GraphedCall: a parameter already holds a gradient; the graph's backward would overwrite the "
                "buffer it aliases. Reset gradients with zero_grad(set_to_none=True) before each graphed step "
                "(gradient accumulation through a CUDA graph is not supported)."
            )
        return graphed(*tensors)

    def _capture(self, module: nn.Module, tensors: tuple[Tensor, ...]) -> nn.Module:
        bound = _Bound(module, self.fn).train()
        # The sample arguments become the graph's static input buffers: copies, never the caller's tensors.
        samples = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in tensors)
        try:
            with torch.enable_grad():
                return torch.cuda.make_graphed_callables(
                    bound, samples, num_warmup_iters=self.warmup_iters, allow_unused_input=True
                )
        except RuntimeError as err:  # (torch.AcceleratorError is a RuntimeError)
            raise RuntimeError(
                "GraphedCall: capturing the CUDA graph failed. A common cause is an autograd graph of an earlier "
                "eager step still alive (a loss or its parts kept in a variable): its parameters' gradient "
                "nodes remember the default stream, which the capture may not touch. Drop those references "
                "(e.g. `del loss`) before the first graphed call. Otherwise fn must be free of host syncs "
                "and host-to-device copies."
            ) from err


class GraphedInference:
    """``GraphedInference(fn)(*tensors)`` equals ``fn(*tensors)`` (a tensor or a tuple of tensors), replayed
    from one CUDA graph.

    The first call with CUDA inputs runs ``fn`` ``warmup_iters`` times on a side stream (kernel selection,
    ``torch.compile`` autotuning, allocations), then captures it once; each call copies ``tensors`` into the
    graph's static inputs and replays. The returned tensors are the graph's static outputs, overwritten by the
    next replay: clone what must outlive it. The warm-up really runs ``fn``: when ``fn`` updates buffers in place,
    ``state()`` names them; they are saved before the warm-up and restored after the capture, so the first
    replay starts from the state the caller left. CPU inputs run ``fn`` eagerly. A different
    input signature (shapes, dtypes) re-captures.

    Limits: ``fn`` must be free of host synchronisation, data-dependent shapes and CPU-to-device copies of
    changing values (the graph replays the recorded kernels only), and must run under ``torch.no_grad``.
    """

    def __init__(
        self,
        fn: Callable[..., Tensor | tuple[Tensor, ...]],
        warmup_iters: int = 2,
        state: Callable[[], Sequence[Tensor]] | None = None,
    ) -> None:
        if warmup_iters < 1:
            raise ValueError(f"warmup_iters: expected >= 1, got {warmup_iters}")
        self.fn, self.warmup_iters, self.state = fn, warmup_iters, state
        self.graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple | None = None
        self._inputs: tuple[Tensor, ...] = ()
        self._outputs: Tensor | tuple[Tensor, ...] | None = None

    @property
    def captured(self) -> bool:
        """Whether a graph has been captured."""
        return self.graph is not None

    def __call__(self, *tensors: Tensor) -> Tensor | tuple[Tensor, ...]:
        if not tensors or not all(t.is_cuda for t in tensors):
            return self.fn(*tensors)
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
        if key != self._key:
            self._capture(tensors)
            self._key = key
        for static, value in zip(self._inputs, tensors, strict=True):
            static.copy_(value)
        assert self.graph is not None
        self.graph.replay()
        assert self._outputs is not None
        return self._outputs

    @torch.no_grad()
    def _capture(self, tensors: tuple[Tensor, ...]) -> None:
        self._inputs = tuple(t.detach().clone() for t in tensors)
        buffers = list(self.state()) if self.state is not None else []
        saved = [b.clone() for b in buffers]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.fn(*self._inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._outputs = self.fn(*self._inputs)
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)
