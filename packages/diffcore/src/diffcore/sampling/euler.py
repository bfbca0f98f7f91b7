"""Euler and Heun on the probability-flow ODE ``dx/dt = d_alpha x0 + d_sigma eps`` in ``t``, with
EDM's stochastic churn (Karras et al. 2022, Algorithm 2), and k-diffusion's Euler ancestral.

All of them work with any Gaussian path (VP, VE, EDM, rectified flow): the ODE is written in ``t``
with the schedule's own ``alpha, sigma``, which is Algorithm 1 of Karras et al. for general
``s(t), sigma(t)``. On the EDM path (``alpha = 1, sigma = t sigma_max``) these are exactly EDM's samplers.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import AffineX0Eps
from diffcore.sampling.ddim import sample_ddim
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import (
    GridPoint,
    combine,
    grid_points,
    prepare_grid,
    randn,
    scaled_sigma,
    weighted_sum,
    x0_of,
)


@register("euler", description="Euler on the probability-flow ODE in t (first order)")
def sample_euler(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Explicit Euler ``x_s = x_t + (s - t) v(x_t, t)`` over ``grid``; the last step to ``t = 0``
    returns the ``x0`` estimate (for EDM and rectified flow that *is* the Euler step).

    With ``v = d_alpha x0 + d_sigma eps`` and ``(x0, eps)`` affine in ``(x_t, out)`` for the network output
    ``out`` (:func:`~diffcore.paths.predictions.affine_x0_eps`), the step is ``k_x x_t + k_out out`` with python-float
    coefficients computed once per grid: one fused multiply-add per step besides the network."""
    g = prepare_grid(denoiser, grid, x)
    fused = [
        f.fold(1.0, (nxt.t - cur.t) * cur.d_alpha, (nxt.t - cur.t) * cur.d_sigma)
        for cur, nxt, f in zip(g.points, g.points[1:], g.affine)
    ]
    for i, nxt in enumerate(g.points[1:]):
        out = denoiser.output(x, g.times[i], **cond)
        x_next = x0_of(x, out, g.affine[i]) if nxt.is_data else combine(x, out, *fused[i])
        if callback is not None:
            callback(i, nxt.t, x_next, x_next if nxt.is_data else x0_of(x, out, g.affine[i]))
        x = x_next
    return x


def churn_gamma(p: GridPoint, steps: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """EDM's ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` where ``S_tmin <= sigma_i <= S_tmax``, else 0
    (Karras et al. 2022, Algorithm 2, line 4); ``sigma_i`` is the noise level in data units ``sigma / alpha``."""
    if s_churn <= 0.0 or p.alpha == 0.0:
        return 0.0
    return min(s_churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= scaled_sigma(p) <= s_tmax else 0.0


def churn_time(denoiser: DenoiserBase, p: GridPoint, gamma: float) -> GridPoint:
    """The grid point ``t_hat >= t`` whose data-unit noise level is ``(1 + gamma) sigma / alpha``, i.e.
    ``log_snr(t_hat) = log_snr(t) - 2 log(1 + gamma)`` (Algorithm 2, line 5), clamped to ``t <= t_hat <= 1``."""
    sched = denoiser.schedule
    lam = math.log(p.alpha**2 / p.sigma**2) - 2.0 * math.log1p(gamma)
    t_hat = float(sched.t_from_log_snr(torch.tensor(lam, dtype=torch.float64)))
    t_hat = min(max(t_hat, p.t), 1.0)
    return grid_points(sched, torch.tensor([t_hat], dtype=torch.float64))[0]


def add_churn_noise(x: Tensor, p: GridPoint, hat: GridPoint, noise: Tensor, s_noise: float) -> Tensor:
    """Move ``x`` from time ``p.t`` to ``hat.t >= p.t`` along the forward path:
    ``x_hat = (alpha_hat / alpha) x + sqrt(sigma_hat^2 - (alpha_hat / alpha)^2 sigma^2) S_noise z``
    (Algorithm 2, line 6, for a general path)."""
    a = hat.alpha / p.alpha
    std = math.sqrt(max(hat.sigma**2 - (a * p.sigma) ** 2, 0.0))
    return a * x + (std * s_noise) * noise


@register(
    "heun",
    nfe_per_step=2,
    description="Heun / EDM Algorithm 2 (Karras et al. 2022) with optional churn; second order",
)
def sample_heun(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """Heun's second-order method with EDM's stochastic churn (Karras et al. 2022, Algorithm 2).

    Args:
        s_churn: total churn ``S_churn`` (0: the deterministic Heun sampler, Algorithm 1).
        s_tmin, s_tmax: churn only where ``S_tmin <= sigma / alpha <= S_tmax`` (data-unit noise levels).
        s_noise: ``S_noise``, scale of the fresh noise (slightly above 1 in EDM's tuned settings).

    The last step to ``t = 0`` is Euler's (line 8 without the correction of line 10), which returns
    the ``x0`` estimate at ``t_hat``.
    """
    if s_churn < 0 or s_noise < 0:
        raise ValueError(f"s_churn, s_noise: expected >= 0, got {s_churn}, {s_noise}")
    g = prepare_grid(denoiser, grid, x)
    steps = len(g.points) - 1
    for i, (cur, nxt) in enumerate(itertools.pairwise(g.points)):
        gamma = churn_gamma(cur, steps, s_churn, s_tmin, s_tmax)
        hat, t_hat, f = cur, g.times[i], g.affine[i]
        if gamma > 0.0:
            hat = churn_time(denoiser, cur, gamma)
            x = add_churn_noise(x, cur, hat, randn(x, generator), s_noise)
            t_hat, f = hat.t, denoiser.output_affine(hat.t)
        out = denoiser.output(x, t_hat, **cond)
        if nxt.is_data:
            x_next = x0_of(x, out, f)
        else:
            out_next = _heun_predictor(denoiser, x, out, f, hat, nxt, g.times[i + 1], cond)
            x_next = _heun_corrector(x, out, f, hat, out_next, g.affine[i + 1], nxt)
        if callback is not None:
            callback(i, nxt.t, x_next, x_next if nxt.is_data else x0_of(x, out, f))
        x = x_next
    return x


def _velocity_coefficients(f: AffineX0Eps, p: GridPoint) -> tuple[float, float]:
    """``(k_x, k_out)`` of the ODE velocity ``d_alpha x0 + d_sigma eps = k_x x + k_out out`` at ``p``."""
    return f.fold(0.0, p.d_alpha, p.d_sigma)


def _heun_predictor(
    denoiser: DenoiserBase,
    x: Tensor,
    out: Tensor,
    f: AffineX0Eps,
    hat: GridPoint,
    nxt: GridPoint,
    t_next: float | Tensor,
    cond: dict[str, Any],
) -> Tensor:
    """The network output at the Euler predictor ``x_e = x + h d`` (Algorithm 2, line 8) and ``t_next``."""
    h = nxt.t - hat.t
    d_x, d_out = _velocity_coefficients(f, hat)
    x_euler = combine(x, out, 1.0 + h * d_x, h * d_out)
    return denoiser.output(x_euler, t_next, **cond)


def _heun_corrector(
    x: Tensor,
    out: Tensor,
    f: AffineX0Eps,
    hat: GridPoint,
    out_next: Tensor,
    f_next: AffineX0Eps,
    nxt: GridPoint,
) -> Tensor:
    """The trapezoidal corrector ``x + h/2 (d + d_e)`` (Algorithm 2, line 10) with the predictor
    ``x_e = e_x x + e_out out`` substituted, so it is one weighted sum of ``x``, ``out`` and ``out_next``."""
    h = nxt.t - hat.t
    d_x, d_out = _velocity_coefficients(f, hat)
    e_x, e_out = 1.0 + h * d_x, h * d_out
    n_x, n_out = _velocity_coefficients(f_next, nxt)
    half = 0.5 * h
    return weighted_sum(
        [(x, 1.0 + half * (d_x + n_x * e_x)), (out, half * (d_out + n_x * e_out)), (out_next, half * n_out)]
    )


@register(
    "euler_ancestral",
    stochastic=True,
    description="Euler ancestral (k-diffusion): Euler to sigma_down plus sigma_up noise; = DDIM with eta",
)
def sample_euler_ancestral(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
) -> Tensor:
    """k-diffusion's ``sample_euler_ancestral`` in general alpha/sigma form.

    In data units (``x / alpha``, ``sigma / alpha``) the step is Euler to ``sigma_down`` followed by fresh
    noise ``sigma_up = eta sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2)``; an Euler step in those
    units is exact for constant ``eps``, so the update is algebraically DDIM's with the same ``eta``
    (and the DDPM posterior at ``eta = 1``), so it runs DDIM's update, which needs no division by
    ``alpha = 0`` at ``t = 1`` (zero terminal SNR).
    """
    return sample_ddim(denoiser, x, grid, cond=cond, generator=generator, callback=callback, eta=eta)
