"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", Eq. 12) on any Gaussian path.

``eta = 0`` is the deterministic sampler (the exact solution of the probability-flow ODE for a
constant ``eps`` in the log-SNR variable); ``eta = 1`` draws from the DDPM posterior with its "small"
variance. The skip-step ("subsequence") mode of the paper is nothing but a coarser grid: pass
``steps`` or an explicit grid. Works for VP, VE, EDM and rectified-flow schedules alike.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import ddim_step, grid_points


def check_eta(eta: float) -> float:
    """Validate DDIM's ``eta`` (>= 0; 1 is the DDPM posterior variance)."""
    if not eta >= 0.0:
        raise ValueError(f"eta: expected >= 0, got {eta!r}")
    return float(eta)


@register(
    "ddim",
    stochastic=False,
    description="DDIM (Song et al. 2021, Eq. 12); eta=0 deterministic, eta=1 DDPM posterior variance",
)
def sample_ddim(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM sampling over ``grid`` (decreasing times, ``t = 0`` data).

    Args:
        x: the state at ``grid[0]``, ``(B, ...)``.
        eta: stochasticity, ``c = eta * sigma_s sqrt(1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2))``
            (Eq. 16 of the paper in general alpha/sigma form). Default 0: deterministic.

    Returns:
        the state at ``grid[-1]`` (the ``x0`` estimate when ``grid[-1] = 0``).
    """
    eta = check_eta(eta)
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        d = denoiser.estimate(x, cur.t, **cond)
        x = ddim_step(d, cur, nxt, eta, generator)  # Eq. 12
        if callback is not None:
            callback(i, nxt.t, x, d.x0)
    return x
