"""Classical ODE solvers on the probability-flow ODE ``dx/dt = d_alpha x0 + d_sigma eps`` (Song et al.
2021, Eq. 13; the flow-matching velocity for rectified flow), in the schedule's own time ``t``.

- ``midpoint``: explicit midpoint rule (second order, 2 network calls per step);
- ``rk4``: classical fourth-order Runge-Kutta (4 calls per step);
- ``dopri5``: adaptive Dormand-Prince 5(4) through torchdiffeq (Chen et al. 2018), ``rtol``/``atol``.

A step landing on ``t = 0`` returns the ``x0`` estimate at the step's start (the velocity of VP
paths is singular at ``t = 0``, where ``sigma ~ sqrt(t)``); on EDM and rectified-flow paths that is
exactly an Euler step.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import velocity


def midpoint_step(
    denoiser: DenoiserBase, x: Tensor, t: float, s: float, cond: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    """``x_s = x + h v(x + (h/2) v(x, t), t + h/2)`` with ``h = s - t``; returns ``(x_s, x0 at t)``."""
    h = s - t
    k1, x0 = velocity(denoiser, x, t, cond)
    k2, _ = velocity(denoiser, x + (0.5 * h) * k1, t + 0.5 * h, cond)
    return x + h * k2, x0


def rk4_step(
    denoiser: DenoiserBase, x: Tensor, t: float, s: float, cond: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    """Classical RK4 from ``t`` to ``s``; returns ``(x_s, x0 at t)``."""
    h = s - t
    k1, x0 = velocity(denoiser, x, t, cond)
    k2, _ = velocity(denoiser, x + (0.5 * h) * k1, t + 0.5 * h, cond)
    k3, _ = velocity(denoiser, x + (0.5 * h) * k2, t + 0.5 * h, cond)
    k4, _ = velocity(denoiser, x + h * k3, s, cond)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4), x0


def _fixed_step(step_fn, denoiser, x, grid, cond, callback) -> Tensor:
    times = grid.tolist()
    for i, (t, s) in enumerate(itertools.pairwise(times)):
        if s == 0.0:
            x = x0 = denoiser.x0(x, t, **cond)
        else:
            x, x0 = step_fn(denoiser, x, t, s, cond)
        if callback is not None:
            callback(i, s, x, x0)
    return x


@register("midpoint", nfe_per_step=2, description="Explicit midpoint rule on the probability-flow ODE")
def sample_midpoint(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Second-order midpoint steps over ``grid`` (decreasing, ``t = 0`` data)."""
    return _fixed_step(midpoint_step, denoiser, x, grid, cond, callback)


@register("rk4", nfe_per_step=4, description="Classical Runge-Kutta 4 on the probability-flow ODE")
def sample_rk4(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Fourth-order Runge-Kutta steps over ``grid`` (decreasing, ``t = 0`` data)."""
    return _fixed_step(rk4_step, denoiser, x, grid, cond, callback)


@register(
    "dopri5",
    nfe_per_step=6,
    description="Adaptive Dormand-Prince 5(4) via torchdiffeq on the probability-flow ODE (rtol/atol)",
)
def sample_dopri5(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Adaptive integration from ``grid[0]`` to ``grid[-1]``; the intermediate grid times are the
    output times (callback, trajectory), not the solver's steps. A final ``t = 0`` is reached by the
    ``x0`` estimate at ``grid[-2]``.

    The callback gets the state in place of the ``x0`` estimate (it would cost an extra network call).
    Float16/bfloat16 states are integrated in float32 (the network still sees the low-precision state),
    with ``rtol``/``atol`` raised to at least the dtype's resolution. Unlike the fixed-step samplers, adaptive step
    control reads the error norm on the host: one device synchronisation per attempted step.
    """
    from torchdiffeq import odeint

    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol, atol: expected > 0, got {rtol}, {atol}")
    # A float16/bfloat16 network cannot meet tolerances below its own resolution: the controller
    # would shrink the step forever chasing rounding noise.
    resolution = torch.finfo(x.dtype).eps
    rtol, atol = max(rtol, resolution), max(atol, resolution)
    times = grid.tolist()
    ends_at_data = times[-1] == 0.0
    out_times = times[:-1] if ends_at_data else times
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32

    def func(t: Tensor, y: Tensor) -> Tensor:
        v, _ = velocity(denoiser, y.to(x.dtype), float(t), cond)
        return v.to(work_dtype)

    if len(out_times) > 1:
        t_eval = torch.tensor(out_times, dtype=work_dtype, device=x.device)
        states = odeint(func, x.to(work_dtype), t_eval, rtol=rtol, atol=atol, method="dopri5")
        path = [s.to(x.dtype) for s in states[1:]]
    else:
        path = []
    for i, (s, state) in enumerate(zip(out_times[1:], path)):
        if callback is not None:
            callback(i, s, state, state)
    x = path[-1] if path else x
    if ends_at_data:
        x = denoiser.x0(x, out_times[-1], **cond)
        if callback is not None:
            callback(len(out_times) - 1, 0.0, x, x)
    return x
