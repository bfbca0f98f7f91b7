"""What sampler steps are built from: the grid's path coefficients as python floats, the one DDIM step, the
DDPM posterior and forward-transition spreads, the reverse SDE's coefficients, and the half-log-SNR
quantities of exponential integrators (DPM-Solver, DPM-Solver++, UniPC).

Everything here is computed on the host from the float64 CPU grid, once, so a sampling loop built from these
pieces and :meth:`~diffcore.paths.denoiser.DenoiserBase.estimate` never synchronises with the device and can be
captured as a CUDA graph.

Notation: a step goes from the current time ``t`` (``cur``) to the next time ``s < t`` (``nxt``, towards data,
``t = 0``); ``x_t = alpha_t x_0 + sigma_t eps``. Exponential integrators step in ``lambda = log(alpha / sigma)``
(Lu et al. 2022, Eq. 3.4; Lu et al. 2022b, Eq. 8), which is ``+inf`` where ``sigma = 0`` (``t = 0`` of VP, EDM and
rectified flow) and ``-inf`` where ``alpha = 0`` (``t = 1`` of rectified flow or zero-terminal-SNR schedules); a
step of infinite length in ``lambda`` is taken at first order.

**The last step.** Every sampler applies one rule, :attr:`GridPoint.is_data`: a step that lands on ``t = 0``
returns the ``x0`` estimate at the step's start (the noise-free final step of DDPM's Algorithm 2 and of
Song et al.'s SDE samplers). It holds for every schedule, also VE, whose ``sigma(0) = sigma_min > 0``: the
samplers denoise fully instead of stopping at ``sigma_min`` of noise. A grid ending at ``t > 0`` returns the
noisy state there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffcore.paths.denoiser import Estimate, weighted_sum
from diffcore.paths.schedules import Schedule, memoise_per_schedule
from diffcore.sampling.grids import time_at_log_snr

__all__ = [
    "GridPoint",
    "ddim_step",
    "grid_points",
    "half_log_snr",
    "phi",
    "point_at_lambda",
    "posterior_std",
    "randn",
    "renoise",
    "reverse_sde_coefficients",
    "scaled_sigma",
    "snr_ratio",
    "step_length",
    "transition_std",
]


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
        """The last-step rule of every sampler: a step landing here (``t = 0``) returns the ``x0`` estimate."""
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


def randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped, placed and typed like ``x``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ------------------------------------------------------------------------------------------------
# DDPM / DDIM: the posterior of the forward path and the DDIM step.
# ------------------------------------------------------------------------------------------------


def snr_ratio(cur: GridPoint, nxt: GridPoint) -> float:
    """``r = (alpha_t sigma_s) / (alpha_s sigma_t) = exp(lambda_t - lambda_s)`` in [0, 1].

    The DDPM posterior ``q(x_s | x_t, x_0)`` has mean ``alpha_s x_0 + r sigma_s eps`` and variance
    ``sigma_s^2 (1 - r^2)`` (Ho et al. 2020, Eq. 6-7, written for a general Gaussian path; Kingma et al.
    2021, Eq. 26-28). Requires ``alpha_s > 0`` and ``sigma_t > 0``, true for every step with ``s < t``.
    """
    return (cur.alpha * nxt.sigma) / (nxt.alpha * cur.sigma)


def posterior_std(cur: GridPoint, nxt: GridPoint) -> float:
    """Standard deviation of the DDPM posterior ``q(x_s | x_t, x_0)``, ``sigma_s sqrt(1 - r^2)``
    (:func:`snr_ratio`): DDPM's "small" variance ``beta-tilde`` (Ho et al. 2020, Eq. 7) in general form, and
    DDIM's ``sigma_t(eta = 1)`` (Song et al. 2021, Eq. 16)."""
    r = snr_ratio(cur, nxt)
    return nxt.sigma * math.sqrt(max(1.0 - r * r, 0.0))


def transition_std(lower: GridPoint, upper: GridPoint) -> float:
    """Standard deviation of the forward transition ``q(x_u | x_l) = N((alpha_u / alpha_l) x_l, std^2)`` from
    ``lower`` up to ``upper``: ``sqrt(sigma_u^2 - (alpha_u / alpha_l)^2 sigma_l^2)``; for a DDPM table and
    adjacent steps ``std^2 = beta`` (DDPM's "large" variance, Ho et al. 2020, Sec. 3.2). Needs ``alpha_l > 0``."""
    a = upper.alpha / lower.alpha
    return math.sqrt(max(upper.sigma**2 - (a * lower.sigma) ** 2, 0.0))


def renoise(x: Tensor, lower: GridPoint, upper: GridPoint, noise: Tensor, scale: float = 1.0) -> Tensor:
    """Move the state ``x`` at ``lower`` up to ``upper`` along the forward path: a draw from
    ``q(x_u | x_l)``, ``(alpha_u / alpha_l) x + scale * transition_std * z`` for standard normal ``noise`` ``z``
    (``scale``: EDM's ``S_noise``; 1 for the exact transition)."""
    return weighted_sum([(x, upper.alpha / lower.alpha), (noise, scale * transition_std(lower, upper))])


def ddim_step(
    d: Estimate, cur: GridPoint, nxt: GridPoint, eta: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """One DDIM step (Song et al. 2021, Eq. 12) from the estimate ``d`` at ``cur`` to ``nxt``, any Gaussian path:

        x_s = alpha_s x_0 + sqrt(sigma_s^2 - c^2) eps + c z,     c = eta * posterior_std(cur, nxt).

    ``eta = 0``: deterministic DDIM, the probability-flow ODE solved exactly for a constant ``eps`` in
    ``lambda`` (= DPM-Solver-1, Lu et al. 2022, Eq. 3.7); ``eta = 1``: the DDPM posterior with the "small"
    variance. ``z`` is drawn from ``generator`` when ``c > 0``. Landing on ``t = 0`` returns ``x0``."""
    if nxt.is_data:
        return d.x0
    c = eta * posterior_std(cur, nxt) if eta > 0 else 0.0
    x = d.combine(x0=nxt.alpha, eps=math.sqrt(max(nxt.sigma**2 - c * c, 0.0)))
    return torch.add(x, randn(x, generator), alpha=c) if c > 0 else x


# ------------------------------------------------------------------------------------------------
# The SDE view and data-unit noise levels.
# ------------------------------------------------------------------------------------------------


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
# Exponential integrators: steps in lambda = log(alpha / sigma).
# ------------------------------------------------------------------------------------------------


def point_at_lambda(schedule: Schedule, lam: float) -> GridPoint:
    """The grid point whose half-log-SNR is ``lam`` (through ``schedule.t_from_log_snr(2 lam)``)."""
    if not math.isfinite(lam):
        raise ValueError(f"lam: expected a finite half-log-SNR, got {lam}")
    return grid_points(schedule, [time_at_log_snr(schedule, 2.0 * lam)])[0]


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
