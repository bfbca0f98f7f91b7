"""Parameter and compute counts of a forward pass, with ``torch.utils.flop_counter.FlopCounterMode``.

Counting works on the ``meta`` device: build the model and its inputs there and nothing is
allocated or computed, so even DiT-XL/2 is counted in well under a second::

    with torch.device("meta"):
        model = DiT_XL_2(learn_sigma=True)
        x, t, y = torch.empty(1, 4, 32, 32), torch.empty(1), torch.zeros(1, dtype=torch.long)
    cost = forward_cost(model, x, t, y=y)   # cost.macs ~ 118.6e9, the DiT paper's "Gflops" (Table 4)

Convention: ``FlopCounterMode`` counts a multiply-accumulate as 2 FLOPs (matmuls, convolutions,
attention); :attr:`ForwardCost.macs` is half of that. Element-wise ops are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ForwardCost:
    """Cost of one forward call: ``flops`` = 2 x ``macs``; ``by_operator`` maps aten op names to FLOPs."""

    params: int
    flops: int
    by_operator: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """Multiply-accumulates (half the FLOPs)."""
        return self.flops // 2


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of running ``fn()`` (total, and per aten operator)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def forward_cost(model: nn.Module, *args: Any, **kwargs: Any) -> ForwardCost:
    """Parameters of ``model`` and FLOPs of ``model(*args, **kwargs)`` (run under ``torch.no_grad``).

    Pass ``meta`` tensors and a ``meta`` model to count without computing.
    """
    with torch.no_grad():
        flops, per_op = count_flops(lambda: model(*args, **kwargs))
    return ForwardCost(params=count_parameters(model), flops=flops, by_operator=per_op)


def training_flops_per_sample(forward_flops: int, batch_size: int) -> float:
    """Training FLOPs per sample, ``3 x forward`` (backward = 2 x forward; Kaplan et al. 2020, Sec. 2.1)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    return 3.0 * forward_flops / batch_size
