"""Learning-rate schedules as pure functions of the optimizer step, and the LambdaLR built from them.

Step ``s`` is 0-based: ``lr_factor(0, ...)`` multiplies the peak learning rate of the first
optimizer update. With ``W = warmup_steps`` and ``T = total_steps``:

* warmup, ``s < W``:  ``factor = (s + 1) / W``  (linear, reaching 1 at the last warmup step);
* constant, ``s >= W``: ``factor = 1``;
* cosine, ``s >= W``:   ``factor = m + (1 - m) * (1 + cos(pi * p)) / 2`` with
  ``p = min(1, (s - W) / (T - W))`` and ``m = min_lr_ratio`` -- SGDR (Loshchilov & Hutter, 2017),
  eq. 5, for a single cycle without restarts.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from diffcore.training.config import LrSchedule


def lr_factor(
    step: int,
    *,
    schedule: LrSchedule,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> float:
    """The multiplier of the peak learning rate at 0-based optimizer step ``step`` (formulas above)."""
    if step < 0:
        raise ValueError(f"step: expected an integer >= 0, got {step}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule: expected 'constant' or 'cosine', got {schedule!r}")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: LrSchedule,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` following :func:`lr_factor`; call ``.step()`` once per optimizer step."""
    factor = functools.partial(
        lr_factor,
        schedule=schedule,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=min_lr_ratio,
    )
    return LambdaLR(optimizer, lr_lambda=factor)
