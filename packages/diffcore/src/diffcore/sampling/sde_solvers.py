"""Stochastic samplers of the reverse-time SDE and of Langevin dynamics, for any Gaussian path.

- ``euler_maruyama``: Euler-Maruyama on the reverse SDE (Song et al. 2021, "Score-Based Generative
  Modeling through SDEs", Eq. 6), ``dx = [f x - g^2 score] dt + g dw_bar`` with ``f, g`` derived from
  the schedule: ``f = d log alpha / dt``, ``g^2 = d sigma^2 / dt - 2 f sigma^2``.
- ``pc``: predictor-corrector (Song et al. 2021, Algorithms 1, 2 and 4): the Euler-Maruyama predictor
  followed by Langevin corrector steps whose size follows a target signal-to-noise ratio ``snr``.
- ``langevin``: annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) over the grid's noise
  levels, with the final denoising step of Jolicoeur-Martineau et al. 2021.

Where ``alpha = 0`` (``t = 1`` of rectified flow and of zero-terminal-SNR schedules) ``f`` and ``g^2`` are
infinite and Euler-Maruyama is undefined; a step leaving such a time is taken as the DDPM posterior step
(another first-order discretisation of the same reverse SDE, finite there), so those schedules still
sample from ``t = 1``. Euler-Maruyama is explicit: steps with ``|f h| >~ 1`` (coarse grids crowded near
``alpha = 0``, e.g. a Karras grid on rectified flow) are unstable; use ``ddpm`` or ``dpmpp_2m_sde`` there.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, Estimate, weighted_sum
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import GridPoint, ddim_step, grid_points, randn, reverse_sde_coefficients


def euler_maruyama_step(
    d: Estimate, cur: GridPoint, nxt: GridPoint, generator: torch.Generator | None
) -> Tensor:
    """One reverse-time Euler-Maruyama step from the estimate ``d`` at ``cur`` to ``nxt`` (``h = s - t < 0``):
    ``x_s = x + (f x + g^2 eps / sigma) h + g sqrt(-h) z`` (the score is ``-eps / sigma``). Where
    ``alpha_t = 0`` the DDPM posterior step (DDIM with ``eta = 1``) instead; landing on ``t = 0``: ``x0``."""
    if nxt.is_data:
        return d.x0
    if cur.alpha == 0.0:
        return ddim_step(d, cur, nxt, 1.0, generator)
    f, g2 = reverse_sde_coefficients(cur)
    h = nxt.t - cur.t
    drift = d.terms(x=1.0 + f * h, eps=g2 / cur.sigma * h)
    return weighted_sum([*drift, (randn(d.x, generator), math.sqrt(-g2 * h))])


@register(
    "euler_maruyama",
    stochastic=True,
    description="Euler-Maruyama on the reverse-time SDE (Song et al. 2021, Eq. 6), any schedule",
)
def sample_euler_maruyama(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler-Maruyama over ``grid`` (decreasing, ``t = 0`` data); the last step to ``t = 0`` returns the
    ``x0`` estimate (the noise-free "denoising" step of Song et al.'s code)."""
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        x = euler_maruyama_step(d, cur, nxt, generator)
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
    return x


def _mean_norm(z: Tensor) -> Tensor:
    """``||z||`` over all but the batch dimension, averaged over the batch (a 0-d device tensor)."""
    return z.float().reshape(z.shape[0], -1).norm(dim=1).mean()


def langevin_corrector_step(
    denoiser: DenoiserBase, x: Tensor, p: GridPoint, snr: float, noise: Tensor, cond: dict[str, Any]
) -> Tensor:
    """One Langevin corrector step at time ``p`` (Song et al. 2021, Algorithm 4 with ``alpha_i = 1``):
    ``x + e s + sqrt(2 e) z`` with ``e = 2 (snr ||z|| / ||s||)^2`` and ``s = -eps / sigma``. As in the
    paper's code, both norms are batch means (per-sample norms of low-dimensional data swing wildly);
    the step size stays a device tensor, so no value leaves the device."""
    score = denoiser.estimate(x, p.t, **cond).eps * (-1.0 / p.sigma)
    ratio = _mean_norm(noise) / _mean_norm(score).clamp_min(1e-12)
    step = (2.0 * snr * snr) * ratio.square()
    return (x.float() + step * score.float() + (2.0 * step).sqrt() * noise.float()).to(x.dtype)


@register(
    "pc",
    stochastic=True,
    nfe_per_step=2,
    description="Predictor-corrector (Song et al. 2021, Alg. 1/4): Euler-Maruyama + Langevin corrector",
)
def sample_pc(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    snr: float = 0.16,
    corrector_steps: int = 1,
) -> Tensor:
    """Predictor-corrector sampling: each step is an Euler-Maruyama predictor to the next time followed by
    ``corrector_steps`` Langevin corrector steps there (none at ``t = 0``, where the predictor returns
    the ``x0`` estimate).

    Args:
        snr: the corrector's signal-to-noise ratio ``r`` (0.16 for CIFAR-10 VE in Song et al.).
        corrector_steps: Langevin steps per grid time (``M``).
    """
    if not snr > 0:
        raise ValueError(f"snr: expected > 0, got {snr!r}")
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps: expected an integer >= 0, got {corrector_steps!r}")
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        x = euler_maruyama_step(d, cur, nxt, generator)
        if not nxt.is_data:
            for _ in range(corrector_steps):
                x = langevin_corrector_step(denoiser, x, nxt, snr, randn(x, generator), cond)
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
    return x


@register(
    "langevin",
    stochastic=True,
    nfe_per_step=10,
    description="Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) with a final denoising step",
)
def sample_langevin(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    steps_each: int = 10,
    epsilon: float | None = None,
) -> Tensor:
    """Annealed Langevin dynamics: step ``i`` moves to the level ``t_{i+1}`` and runs ``steps_each`` steps of
    ``x <- x + (a / 2) score(x, t_{i+1}) + sqrt(a) z`` there, ``a = epsilon sigma_{i+1}^2 / sigma_L^2``
    (``sigma_L``: the last positive noise level). The start ``sigma(t_0) noise`` stands for a sample of the
    first level. A final step to ``t = 0`` returns the ``x0`` estimate at ``t_L`` (the denoising step of
    Jolicoeur-Martineau et al. 2021).

    Args:
        steps_each: Langevin steps per noise level (``T`` of Algorithm 1; the paper uses 100).
        epsilon: step size at the last level (the paper's 2e-5 at ``sigma_L = 0.01``); default
            ``0.2 sigma_L^2``, the paper's ratio, which makes every ``a = 0.2 sigma^2``.
    """
    if not isinstance(steps_each, int) or steps_each < 1:
        raise ValueError(f"steps_each: expected an integer >= 1, got {steps_each!r}")
    points = grid_points(denoiser.schedule, grid)
    sigma_last = (points[-2] if points[-1].is_data else points[-1]).sigma
    eps_l = 0.2 * sigma_last**2 if epsilon is None else float(epsilon)
    if not eps_l > 0:
        raise ValueError(f"epsilon: expected > 0, got {epsilon!r}")
    for i, (cur, nxt) in enumerate(itertools.pairwise(points)):
        if nxt.is_data:
            d = denoiser.estimate(x, cur.t, **cond)
            x = d.x0
        else:  # x <- x + (a / 2) score + sqrt(a) z, with score = -eps / sigma
            a = eps_l * (nxt.sigma / sigma_last) ** 2
            for _ in range(steps_each):
                d = denoiser.estimate(x, nxt.t, **cond)
                x = weighted_sum(
                    [*d.terms(x=1.0, eps=-0.5 * a / nxt.sigma), (randn(x, generator), math.sqrt(a))]
                )
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
    return x
