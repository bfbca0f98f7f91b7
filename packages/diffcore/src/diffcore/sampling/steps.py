"""Per-step arithmetic shared by the Gaussian-path samplers (DDPM, DDIM, Euler, Heun, SDE, ODE).

Everything here works on python floats read once from the CPU grid, so a sampler loop built from
these pieces never synchronises with the device and can be captured as a CUDA graph.

Notation: a step goes from the current time ``t`` to the next time ``s < t`` (towards data, ``t = 0``);
``x_t = alpha_t x_0 + sigma_t eps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import AffineX0Eps, PathCoefficients, from_x0_eps, lincomb
from diffcore.paths.schedules import Schedule, memoise_per_schedule

HALF_DTYPES = (torch.float16, torch.bfloat16)


def half_log_snr(alpha: float, sigma: float) -> float:
    """``log(alpha / sigma)`` with the limits ``+inf`` (sigma = 0) and ``-inf`` (alpha = 0)."""
    if sigma <= 0:
        return math.inf
    if alpha <= 0:
        return -math.inf
    return math.log(alpha) - math.log(sigma)


@dataclass(frozen=True)
class GridPoint:
    """Path coefficients at one grid time, as python floats (no device tensors).

    ``d_alpha``/``d_sigma`` are NaN for points built without derivatives (intermediate points of
    exponential integrators, which never need them)."""

    t: float
    alpha: float
    sigma: float
    d_alpha: float = math.nan
    d_sigma: float = math.nan

    @property
    def is_data(self) -> bool:
        """True at ``t = 0``: a step landing here returns the ``x0`` estimate."""
        return self.t == 0.0

    @property
    def lam(self) -> float:
        """Half log-SNR ``log(alpha / sigma)`` (``+inf`` where sigma = 0, ``-inf`` where alpha = 0): the
        variable exponential integrators (DPM-Solver, UniPC) step in."""
        return half_log_snr(self.alpha, self.sigma)


@memoise_per_schedule(maxsize=1024)
def _points_at(schedule: Schedule, times: tuple[float, ...]) -> tuple[GridPoint, ...]:
    columns = [
        c.reshape(-1).tolist() for c in schedule.coefficients(torch.tensor(times, dtype=torch.float64))
    ]
    return tuple(GridPoint(t, *cs) for t, *cs in zip(times, *columns))


def grid_points(schedule: Schedule, grid: Tensor | list[float]) -> list[GridPoint]:
    """The coefficients of ``schedule`` at every time of ``grid`` ((N+1,) float64 CPU), evaluated once.

    Memoised per (schedule, grid) (:func:`~diffcore.paths.schedules.memoise_per_schedule`): a host evaluation of
    a discrete table costs ~20 small tensor ops, which repeated sampling calls on one grid need not pay
    again."""
    times = tuple(torch.as_tensor(grid, dtype=torch.float64).cpu().reshape(-1).tolist())
    return list(_points_at(schedule, times))


def snr_ratio(cur: GridPoint, nxt: GridPoint) -> float:
    """``r = (alpha_t sigma_s) / (alpha_s sigma_t) = exp((lambda_t - lambda_s) / 2)`` in [0, 1].

    The DDPM posterior ``q(x_s | x_t, x_0)`` has mean ``alpha_s x_0 + r sigma_s eps`` and variance
    ``sigma_s^2 (1 - r^2)`` (Ho et al. 2020, Eq. 6-7, written for a general Gaussian path; Kingma et al.
    2021, Eq. 26-28). Requires ``alpha_s > 0`` and ``sigma_t > 0``, true for every step with ``s < t``.
    """
    return (cur.alpha * nxt.sigma) / (nxt.alpha * cur.sigma)


def randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped, placed and typed like ``x``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddim_coefficients(cur: GridPoint, nxt: GridPoint, eta: float) -> tuple[float, float, float]:
    """``(c_x0, c_eps, c)`` of the DDIM step (Song et al. 2021, Eq. 12) from ``cur`` to ``nxt`` (not data):
    ``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z`` with ``c = eta * sigma_s sqrt(1 - r^2)``
    (:func:`snr_ratio`). ``eta = 0``: the deterministic DDIM / probability-flow step; ``eta = 1``: the
    DDPM posterior with the "small" variance ``beta-tilde``."""
    r = snr_ratio(cur, nxt)
    c = eta * nxt.sigma * math.sqrt(max(1.0 - r * r, 0.0))
    return nxt.alpha, math.sqrt(max(nxt.sigma**2 - c * c, 0.0)), c


def ddim_update(
    x0: Tensor, eps: Tensor, cur: GridPoint, nxt: GridPoint, eta: float, noise: Tensor | None
) -> Tensor:
    """One DDIM step from ``cur`` to ``nxt`` for a general Gaussian path with the coefficients of
    :func:`ddim_coefficients`; ``noise`` ``z`` is needed when ``c > 0``. Landing on ``t = 0`` returns ``x0``.
    """
    if nxt.is_data:
        return x0
    c_x0, c_eps, c = ddim_coefficients(cur, nxt, eta)
    out = c_x0 * x0 + c_eps * eps
    if c > 0.0:
        if noise is None:
            raise ValueError("noise: a stochastic DDIM step (eta > 0) needs a noise tensor")
        out = out + c * noise
    return out


def velocity(
    denoiser: DenoiserBase, x: Tensor, t: float, cond: dict[str, Any], at: GridPoint | None = None
) -> tuple[Tensor, Tensor]:
    """The probability-flow ODE velocity ``dx/dt = d_alpha x0 + d_sigma eps`` at ``(x, t)`` and the
    ``x0`` estimate, from one network call. ``at``: the grid point of ``t`` if known (saves evaluating
    the schedule again on the host)."""
    x0, eps = denoiser.x0_eps(x, t, **cond)
    c = (
        PathCoefficients(at.alpha, at.sigma, at.d_alpha, at.d_sigma)
        if at is not None
        else denoiser.coefficients(t, x)
    )
    return from_x0_eps(x0, eps, "velocity", c), x0


def scaled_sigma(p: GridPoint) -> float:
    """The noise level in data units, ``sigma / alpha`` (EDM's ``sigma``); ``inf`` where ``alpha = 0``."""
    return p.sigma / p.alpha if p.alpha > 0 else math.inf


def reverse_sde_coefficients(p: GridPoint) -> tuple[float, float]:
    """``(f, g^2)`` of the forward SDE ``dx = f x dt + g dw`` whose marginals are the path at ``p``:
    ``f = d log alpha / dt`` and ``g^2 = d sigma^2 / dt - 2 f sigma^2`` (Song et al. 2021, Eq. 5;
    Kingma et al. 2021, Appendix A). Needs ``alpha > 0``."""
    f = p.d_alpha / p.alpha
    g2 = 2.0 * p.sigma * p.d_sigma - 2.0 * f * p.sigma**2
    return f, max(g2, 0.0)


# ------------------------------------------------------------------------------------------------
# Fused steps: the conversion of the network output folded into the update.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedGrid:
    """Everything a fused sampler loop needs, computed once per call before the loop.

    ``points``: the grid's coefficients (:func:`grid_points`); ``times``: what to pass to
    ``denoiser.output`` at each point (the network's time tensors, built at once); ``affine``: python-float
    ``(x_0, eps)`` as affine functions of ``(x, output)`` at each point."""

    points: list[GridPoint]
    times: list[float] | list[Tensor]
    affine: list[AffineX0Eps]


def prepare_grid(denoiser: DenoiserBase, grid: Tensor, x: Tensor) -> PreparedGrid:
    """The :class:`PreparedGrid` of ``grid`` ((N+1,) float64 CPU) for states like ``x`` ``(B, ...)``."""
    points = grid_points(denoiser.schedule, grid)
    times = denoiser.network_times([p.t for p in points], x)
    return PreparedGrid(points, times, [denoiser.output_affine(p.t) for p in points])


def combine(x: Tensor, out: Tensor, k_x: float, k_out: float) -> Tensor:
    """``k_x x + k_out out`` for a state ``x`` and a network output ``out`` (both ``(B, ...)``): one fused
    multiply-add, in float32 at least (half-precision states are upcast and the result cast back)."""
    if x.dtype in HALF_DTYPES:
        return lincomb(k_x, x.float(), k_out, out.float()).to(x.dtype)
    return lincomb(k_x, x, k_out, out)


def weighted_sum(terms: Sequence[tuple[Tensor, float]]) -> Tensor:
    """``sum_j k_j y_j`` over ``terms = [(y_j, k_j), ...]`` (tensors ``(B, ...)`` of one dtype): one
    multiplication and one in-place ``add_`` per further term on the fresh product, in float32 at least."""
    (first, k), *rest = terms
    if first.dtype in HALF_DTYPES:
        return weighted_sum([(y.float(), c) for y, c in terms]).to(first.dtype)
    acc = first * k
    for y, c in rest:
        acc.add_(y, alpha=c)
    return acc


def x0_of(x: Tensor, out: Tensor, f: AffineX0Eps) -> Tensor:
    """The data estimate ``x_0`` from a state and its network output (:class:`AffineX0Eps` ``f``)."""
    return combine(x, out, f.x0_x, f.x0_out)
