"""DDPM ancestral sampling (Ho, Jain & Abbeel 2020, Algorithm 2) on any grid and any Gaussian path.

Each step draws from ``q(x_s | x_t, x0 = x0_hat)``, the Gaussian posterior of the forward path.
For ``x_t = alpha_t x_0 + sigma_t eps`` and ``s < t`` the transition is ``x_t | x_s ~ N(a x_s, b^2)``
with ``a = alpha_t / alpha_s`` and ``b^2 = sigma_t^2 - a^2 sigma_s^2`` (for a DDPM table and adjacent
steps ``b^2 = beta_t``), and the posterior (Ho et al. Eq. 6-7, in general form) is

    mean = alpha_s x0 + r sigma_s eps,     r = alpha_t sigma_s / (alpha_s sigma_t),
    var  = sigma_s^2 (1 - r^2) = b^2 sigma_s^2 / sigma_t^2     ("small": beta-tilde).

The "large" choice replaces the variance by ``b^2`` (beta), the other bound of Ho et al., Sec. 3.2.
The last step to ``t = 0`` returns the mean, i.e. the ``x0`` estimate (Algorithm 2 adds no noise there).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, weighted_sum
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import grid_points, posterior_std, randn, snr_ratio, transition_std

Variance = Literal["small", "large"]


@register(
    "ddpm",
    stochastic=True,
    description="DDPM ancestral sampling (Ho et al. 2020, Alg. 2); variance='small' (beta-tilde) or 'large' (beta)",
)
def sample_ddpm(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    variance: Variance = "small",
) -> Tensor:
    """Ancestral sampling over ``grid`` (decreasing times, ``t = 0`` data).

    Args:
        x: the state at ``grid[0]``, ``(B, ...)``.
        variance: ``"small"`` (posterior variance beta-tilde, the exact posterior; equals DDIM with
            ``eta = 1``) or ``"large"`` (the forward variance beta).

    Returns:
        the state at ``grid[-1]`` (the ``x0`` estimate when ``grid[-1] = 0``).
    """
    if variance not in ("small", "large"):
        raise ValueError(f"variance: expected 'small' or 'large', got {variance!r}")
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        if nxt.is_data:
            x = d.x0
        else:  # the posterior mean alpha_s x0 + r sigma_s eps (Eq. 7) plus std z
            std = posterior_std(cur, nxt) if variance == "small" else transition_std(nxt, cur)
            mean = d.terms(x0=nxt.alpha, eps=snr_ratio(cur, nxt) * nxt.sigma)
            x = weighted_sum([*mean, (randn(x, generator), std)])
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
    return x
