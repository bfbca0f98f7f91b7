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
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import grid_points

State = TypeVar("State", Tensor, tuple[Tensor, ...])
"""An ODE state: a tensor, or a tuple of tensors integrated together (the likelihood's ``(x, delta)``)."""


def _axpy(y: State, h: float, k: State) -> State:
    """``y + h k`` for a tensor or a tuple of tensors."""
    if isinstance(y, Tensor):
        return y + h * k
    return tuple(a + h * b for a, b in zip(y, k, strict=True))


def midpoint_step(
    f: Callable[[float, State], State], t: float, y: State, h: float, k1: State | None = None
) -> State:
    """The explicit midpoint rule for ``dy/dt = f(t, y)``: ``y + h f(t + h/2, y + (h/2) f(t, y))`` (second
    order). ``k1``: ``f(t, y)`` if already evaluated."""
    k1 = f(t, y) if k1 is None else k1
    return _axpy(y, h, f(t + 0.5 * h, _axpy(y, 0.5 * h, k1)))


def rk4_step(
    f: Callable[[float, State], State], t: float, y: State, h: float, k1: State | None = None
) -> State:
    """The classical fourth-order Runge-Kutta step for ``dy/dt = f(t, y)`` from ``t`` to ``t + h``:
    ``y + h/6 (k1 + 2 k2 + 2 k3 + k4)``. ``k1``: ``f(t, y)`` if already evaluated."""
    k1 = f(t, y) if k1 is None else k1
    k2 = f(t + 0.5 * h, _axpy(y, 0.5 * h, k1))
    k3 = f(t + 0.5 * h, _axpy(y, 0.5 * h, k2))
    k4 = f(t + h, _axpy(y, h, k3))
    if isinstance(y, Tensor):
        return y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return tuple(
        a + (h / 6.0) * (b1 + 2.0 * b2 + 2.0 * b3 + b4)
        for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4, strict=True)
    )


def _fixed_step(step_fn, denoiser: DenoiserBase, x: Tensor, grid: Tensor, cond, callback) -> Tensor:
    """Fixed steps of ``step_fn`` on the probability-flow ODE ``dx/dt = v(x, t)`` over ``grid``."""

    def velocity(t: float, y: Tensor) -> Tensor:
        return denoiser.estimate(y, t, **cond).velocity

    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        x = d.x0 if nxt.is_data else step_fn(velocity, cur.t, x, nxt.t - cur.t, k1=d.velocity)
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
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
    points = grid_points(denoiser.schedule, grid)
    ends_at_data = points[-1].is_data
    out_times = [p.t for p in (points[:-1] if ends_at_data else points)]
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32

    def func(t: Tensor, y: Tensor) -> Tensor:
        return denoiser.estimate(y.to(x.dtype), float(t), **cond).velocity.to(work_dtype)

    if len(out_times) > 1:
        t_eval = torch.tensor(out_times, dtype=work_dtype, device=x.device)
        # step_t: the last step lands on the last output time instead of stepping past it and interpolating
        # back (the path has no times outside [0, 1]).
        states = odeint(
            func, x.to(work_dtype), t_eval, rtol=rtol, atol=atol, method="dopri5",
            options={"step_t": t_eval[-1:]},
        )  # fmt: skip
        path = [s.to(x.dtype) for s in states[1:]]
    else:
        path = []
    for i, (s, state) in enumerate(zip(out_times[1:], path)):
        if callback is not None:
            callback(i, s, state, state)
    x = path[-1] if path else x
    if ends_at_data:
        x = denoiser.estimate(x, out_times[-1], **cond).x0
        if callback is not None:
            callback(len(out_times) - 1, 0.0, x, x)
    return x
