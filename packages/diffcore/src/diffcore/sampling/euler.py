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

from diffcore.paths.denoiser import DenoiserBase, weighted_sum
from diffcore.sampling.ddim import sample_ddim
from diffcore.sampling.grids import time_at_log_snr
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import GridPoint, grid_points, randn, renoise, scaled_sigma


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
    """Explicit Euler ``x_s = x_t + (s - t) v(x_t, t)`` over ``grid``, ``v = d_alpha x0 + d_sigma eps``; the last
    step to ``t = 0`` returns the ``x0`` estimate (for EDM and rectified flow that *is* the Euler step)."""
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        x = d.x0 if nxt.is_data else d.combine(x=1.0, velocity=nxt.t - cur.t)
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
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
    t_hat = time_at_log_snr(denoiser.schedule, 2.0 * (p.lam - math.log1p(gamma)))
    return grid_points(denoiser.schedule, [min(max(t_hat, p.t), 1.0)])[0]


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
    points = grid_points(denoiser.schedule, grid)
    steps = len(points) - 1
    for i, (cur, nxt) in enumerate(itertools.pairwise(points)):
        hat = cur
        gamma = churn_gamma(cur, steps, s_churn, s_tmin, s_tmax)
        if gamma > 0.0:  # lines 4-6: raise the noise level to t_hat
            hat = churn_time(denoiser, cur, gamma)
            x = renoise(x, cur, hat, randn(x, generator), s_noise)  # line 6
        d = denoiser.estimate(x, hat.t, **cond)  # line 7: the slope d = v(x_hat, t_hat)
        if nxt.is_data:
            x_next = d.x0
        else:
            h = nxt.t - hat.t
            x_euler = d.combine(x=1.0, velocity=h)  # line 8: x_hat + h d
            d_euler = denoiser.estimate(x_euler, nxt.t, **cond)  # line 9: the slope d' at (x_euler, t_next)
            # line 10, Heun's corrector x_hat + h / 2 (d + d'), the trapezoid rule; since x_euler = x_hat + h d this
            # is (x_hat + x_euler) / 2 + h / 2 d', a sum of three tensors instead of four (one kernel fewer a step)
            x_next = weighted_sum([(x, 0.5), (x_euler, 0.5), *d_euler.terms(velocity=h / 2)])
        if callback is not None:
            callback(i, nxt.t, x_next, d.x0)
        x = x_next
    return x


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
