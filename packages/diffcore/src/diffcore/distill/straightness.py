"""How straight the trajectories of a flow are (Liu et al. 2023, "Flow Straight and Fast", Eq. 3).

For the ODE trajectory ``x(t)`` from noise ``x(1) = z`` to data ``x(0)`` (``t = 0`` data), straightness is

    S = int_0^1 E || (x(1) - x(0)) - v(x(t), t) ||^2 dt,

zero exactly when every trajectory is a straight line traversed at constant speed, in which case one
Euler step is exact. :func:`one_step_error` measures that consequence directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.sample import sample


@dataclass(frozen=True)
class Straightness:
    """``value``: S above; ``relative``: ``S / E||x(1) - x(0)||^2`` (scale-free, in [0, ...));
    ``one_step_error``: ``E||x_euler1 - x(0)||^2 / D``, the mean squared error per dimension of one Euler step."""

    value: float
    relative: float
    one_step_error: float


@torch.no_grad()
def straightness(
    denoiser: DenoiserBase, noise: Tensor, steps: int = 64, cond: dict[str, Any] | None = None
) -> Straightness:
    """Straightness of ``denoiser``'s probability-flow ODE from ``noise`` (B, ...), integrated with ``steps``
    Heun steps on a uniform grid; the time integral is the rectangle rule over the grid times ``t > 0`` (the
    velocity at ``t = 0`` itself is not defined by a denoiser where ``sigma = 0``)."""
    if steps < 2:
        raise ValueError(f"steps: expected >= 2, got {steps}")
    cond = cond or {}
    end, traj = sample(denoiser, noise, "heun", steps, grid="uniform", cond=cond, return_trajectory=True)
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    start = traj[0]
    chord = start - end  # x(1) - x(0): the straight path's constant velocity d x / d t
    dims = tuple(range(1, noise.ndim))
    gaps = [
        ((chord - denoiser.velocity(x, t, **cond)) ** 2).sum(dims).mean().item()
        for x, t in zip(traj[:-1], times[:-1])
    ]
    value = sum(gaps) / steps
    scale = (chord**2).sum(dims).mean().item()
    one = sample(denoiser, noise, "euler", 1, cond=cond)
    return Straightness(value, value / scale, ((one - end) ** 2).mean().item())


def one_step_error(
    denoiser: DenoiserBase, noise: Tensor, steps: int = 64, cond: dict[str, Any] | None = None
) -> float:
    """Mean squared error per dimension of one Euler step against a ``steps``-step Heun solution."""
    return straightness(denoiser, noise, steps, cond).one_step_error
