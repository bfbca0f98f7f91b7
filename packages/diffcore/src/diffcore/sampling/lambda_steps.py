"""Grid points in half-log-SNR ``lambda = log(alpha / sigma)``: what exponential-integrator samplers
(DPM-Solver, DPM-Solver++, UniPC) step in.

Exponential integrators solve the probability-flow ODE exactly in its linear part and approximate only
the network's output as a polynomial in ``lambda`` (Lu et al. 2022, Eq. 3.4; Lu et al. 2022b, Eq. 8).
Every coefficient they need is a python float computed here once from the float64 CPU grid, so the
sampling loop never synchronises with the device.

Edges: ``lambda = +inf`` where ``sigma = 0`` (``t = 0`` of VP / EDM / rectified flow) and ``-inf`` where
``alpha = 0`` (``t = 1`` of rectified flow or zero-terminal-SNR schedules). A step of infinite length in
``lambda`` is always taken at first order, in a form without ``0 * inf``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule
from diffcore.sampling.steps import GridPoint, grid_points, half_log_snr

__all__ = [
    "GridPoint",
    "data_step",
    "ddim_step",
    "grid_points",
    "half_log_snr",
    "phi",
    "point_at_lambda",
    "step_length",
]


def point_at_lambda(schedule: Schedule, lam: float) -> GridPoint:
    """The grid point whose half-log-SNR is ``lam`` (through ``schedule.t_from_log_snr(2 lam)``)."""
    if not math.isfinite(lam):
        raise ValueError(f"lam: expected a finite half-log-SNR, got {lam}")
    t = float(schedule.t_from_log_snr(torch.tensor(2.0 * lam, dtype=torch.float64)))
    return grid_points(schedule, [t])[0]


def step_length(s: GridPoint, t: GridPoint) -> float:
    """``h = lambda_t - lambda_s`` (``inf`` when either end is at the edge of the path)."""
    if math.isinf(t.lam) or math.isinf(s.lam):
        return math.inf
    return t.lam - s.lam


def phi(k: int, h: float) -> float:
    """``I_k(h) = int_0^h exp(-(h - u)) u^k / k! du``, the weights of a data-prediction exponential
    integrator (Lu et al. 2022b, Eq. 9 expanded in ``lambda``). ``I_0 = 1 - e^{-h}``,
    ``I_k = h^k / k! - I_{k-1}``; a series for small ``h`` avoids cancellation."""
    if k < 0:
        raise ValueError(f"k: expected >= 0, got {k}")
    if math.isinf(h):
        if k == 0:
            return 1.0
        raise ValueError(f"h: phi_{k} diverges for an infinite step")
    if abs(h) < 0.1 * (k + 1):
        # I_k(h) = sum_{j >= 0} (-1)^j h^{k + 1 + j} / (k + 1 + j)!
        return sum((-1) ** j * h ** (k + 1 + j) / math.factorial(k + 1 + j) for j in range(20))
    value = -math.expm1(-h)
    for j in range(1, k + 1):
        value = h**j / math.factorial(j) - value
    return value


def data_step(x: Tensor, x0: Tensor, s: GridPoint, t: GridPoint) -> Tensor:
    """First-order step from ``s`` to ``t`` in data-prediction form (DPM-Solver++(1) = DDIM):
    ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) x0`` (Lu et al. 2022b, Eq. 10)."""
    h = step_length(s, t)
    return (t.sigma / s.sigma) * x + (t.alpha * phi(0, h)) * x0


def ddim_step(x0: Tensor, eps: Tensor, t: GridPoint) -> Tensor:
    """First-order step written without dividing by ``alpha_s`` or ``sigma_s`` (Song et al. 2021a, Eq. 12):
    ``x_t = alpha_t x0 + sigma_t eps``; equal to DPM-Solver-1 (Lu et al. 2022, Eq. 3.7) when
    ``x_s = alpha_s x0 + sigma_s eps``."""
    return t.alpha * x0 + t.sigma * eps
