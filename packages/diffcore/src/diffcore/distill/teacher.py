"""One step of a frozen teacher's probability-flow ODE between per-sample times.

Distillation objectives draw a different ``(t, s)`` pair for every sample, so these steps take ``(B,)``
time tensors (unlike the samplers, which read python floats off one grid). ``t = 0`` is data; a step
goes from ``t`` to ``s < t``.

- ``ddim``: ``x_s = alpha_s x0 + sigma_s eps`` with the teacher's ``(x0, eps)`` at ``(x_t, t)``
  (Song et al. 2021, Eq. 12 with eta = 0; the first-order exponential integrator in log-SNR);
- ``euler`` / ``heun``: Euler or Heun (Karras et al. 2022, Algorithm 1) on ``dx/dt = velocity``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import PathCoefficients, from_x0_eps

Solver = Literal["ddim", "euler", "heun"]
SOLVERS: tuple[str, ...] = ("ddim", "euler", "heun")

X0EpsFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``fn(x, t) -> (x0, eps)`` for ``x: (B, ...)`` and ``t: (B,)`` (conditioning already bound)."""


def check_solver(solver: str) -> Solver:
    """Return ``solver`` if known, else raise a ValueError naming the choices."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    return solver  # type: ignore[return-value]


def coefficients(schedule, t: Tensor, like: Tensor) -> PathCoefficients:
    """Path coefficients at per-sample ``t`` (B,), computed in float64, shaped ``(B, 1, ...)`` like ``like``."""
    c = PathCoefficients.at(schedule, t.to(torch.float64), like.ndim)
    return PathCoefficients(*(v.to(like.dtype) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))


def noised(schedule, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """``x_t = alpha(t) x0 + sigma(t) noise`` for per-sample ``t`` (B,)."""
    c = coefficients(schedule, t, x0)
    return c.alpha * x0 + c.sigma * noise


def ode_step(fn: X0EpsFn, schedule, x: Tensor, t: Tensor, s: Tensor, solver: Solver = "ddim") -> Tensor:
    """Advance ``x`` from times ``t`` (B,) to ``s`` (B,) with one step of ``solver``."""
    check_solver(solver)
    x0, eps = fn(x, t)
    cs = coefficients(schedule, s, x)
    if solver == "ddim":
        return cs.alpha * x0 + cs.sigma * eps
    ct = coefficients(schedule, t, x)
    dt = (s - t).to(x.dtype).reshape(ct.alpha.shape)
    d1 = from_x0_eps(x0, eps, "velocity", ct)
    x_next = x + dt * d1
    if solver == "euler":
        return x_next
    # Heun's correction everywhere except where the step lands on data (sigma_s = 0: Euler there).
    x0_2, eps_2 = fn(x_next, s)
    d2 = from_x0_eps(x0_2, eps_2, "velocity", cs)
    return torch.where(cs.sigma > 0, x + dt * 0.5 * (d1 + d2), x_next)


def bind(denoiser: DenoiserBase, cond: dict[str, Any]) -> X0EpsFn:
    """``fn(x, t) = denoiser.x0_eps(x, t, **cond)`` evaluated without gradients."""

    @torch.no_grad()
    def fn(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return denoiser.x0_eps(x, t, **cond)

    return fn


def guided(denoiser: DenoiserBase, cond: dict[str, Any], uncond: dict[str, Any], scale: Tensor) -> X0EpsFn:
    """Classifier-free guidance with a per-sample scale ``w`` (B,): ``x0 = x0_u + w (x0_c - x0_u)`` and the same
    for ``eps`` (Ho & Salimans 2022, Eq. 6; ``w = 1`` is the conditional model). Both branches run in one
    batched forward; keys missing from ``uncond`` take the conditional value."""

    @torch.no_grad()
    def fn(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        both = {k: torch.cat([v, uncond.get(k, v)]) for k, v in cond.items()}
        x0, eps = denoiser.x0_eps(torch.cat([x, x]), torch.cat([t, t]), **both)
        w = scale.to(x.dtype).reshape((b,) + (1,) * (x.ndim - 1))
        return x0[b:] + w * (x0[:b] - x0[b:]), eps[b:] + w * (eps[:b] - eps[b:])

    return fn
