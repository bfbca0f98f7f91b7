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
import math
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import GridPoint, grid_points, randn, snr_ratio

Variance = Literal["small", "large"]


def posterior_std(cur: GridPoint, nxt: GridPoint, variance: Variance) -> float:
    """Standard deviation of the ancestral step ``cur -> nxt``: ``sqrt(beta-tilde)`` ("small") or
    ``sqrt(beta)`` ("large") in general alpha/sigma form."""
    if variance == "small":
        r = snr_ratio(cur, nxt)
        return nxt.sigma * math.sqrt(max(1.0 - r * r, 0.0))
    if variance == "large":
        a = cur.alpha / nxt.alpha
        return math.sqrt(max(cur.sigma**2 - (a * nxt.sigma) ** 2, 0.0))
    raise ValueError(f"variance: expected 'small' or 'large', got {variance!r}")


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
    points = grid_points(denoiser.schedule, grid)
    for i, (cur, nxt) in enumerate(itertools.pairwise(points)):
        x0, eps = denoiser.x0_eps(x, cur.t, **cond)
        if nxt.is_data:
            x = x0
        else:
            mean = nxt.alpha * x0 + (snr_ratio(cur, nxt) * nxt.sigma) * eps
            x = mean + posterior_std(cur, nxt, variance) * randn(x, generator)
        if callback is not None:
            callback(i, nxt.t, x, x0)
    return x
