"""DDIM inversion and latent interpolation.

:func:`invert` encodes data ``x0`` into a latent ``x_T`` by running deterministic DDIM (Song et al. 2021,
Sec. 4.3: DDIM is an Euler step of the probability-flow ODE in ``(x / alpha, sigma / alpha)``) forward
in time over the reverse of a sampling grid; :func:`decode` runs DDIM back over the same grid. Plain
inversion evaluates the network at the step's lower-noise state, the sampler at the higher-noise one, so the round trip carries a
first-order error that falls with the number of steps; ``fixed_point_iters > 0`` solves each inverse
step implicitly (the fixed-point iteration of Pan et al. 2023, "Effective Real Image Editing with
Accelerated Iterative Diffusion Inversion"), making decode(invert(x0)) exact up to the iteration's
convergence.

:func:`interpolate` blends two latents by spherical (Shoemake 1985; White 2016, "Sampling Generative
Networks") or linear interpolation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, Estimate
from diffcore.paths.predictions import PathCoefficients
from diffcore.sampling import grids as grids_mod
from diffcore.sampling.ddim import sample_ddim
from diffcore.sampling.steps import GridPoint, ddim_step, grid_points


def _as_sampled(p: GridPoint) -> PathCoefficients:
    """The path coefficients of the state the DDIM sampler leaves at ``p``: at ``t = 0`` it returns the ``x0``
    estimate itself, i.e. ``alpha = 1, sigma = 0`` (VE's ``sigma(0) = sigma_min`` is dropped)."""
    return PathCoefficients(1.0, 0.0, 0.0, 0.0) if p.is_data else PathCoefficients(p.alpha, p.sigma, 0.0, 0.0)


def _inverse_step(
    denoiser: DenoiserBase,
    x: Tensor,
    low: GridPoint,
    high: GridPoint,
    fixed_point_iters: int,
    cond: dict[str, Any],
) -> Tensor:
    """Map the state ``x`` at ``low`` to the state at ``high > low`` that DDIM sends back to ``x``.

    DDIM from ``high`` gives ``x = alpha_l x0_hat + sigma_l eps_hat`` with the estimates ``(x0_hat, eps_hat)``
    at ``(x_high, high)``, and ``x_high = alpha_h x0_hat + sigma_h eps_hat``. So ``x_high`` is the DDIM step from
    ``(x, low)`` to ``high`` with the network's ``eps_hat``, ``x0_hat`` read off ``x`` (at the data end the
    sampler returned ``x0_hat`` itself: ``alpha_l = 1, sigma_l = 0``):
    ``x_high = (alpha_h / alpha_l) x + (sigma_h - alpha_h sigma_l / alpha_l) eps_hat``. The estimate is first
    taken at ``(x, high)`` (plain DDIM inversion, as diffusers' ``DDIMInverseScheduler``), then at
    ``(x_high, high)`` for each fixed-point iteration; on Gaussian data that map contracts by
    ``(1 - r) / (1 + SNR_h var)``, ``r = alpha_h sigma_l / (alpha_l sigma_h)``. Where ``alpha_h = 0`` (zero
    terminal SNR) it would not contract and the step carries no ``x``; the network's ``x0_hat`` is used instead,
    with ``eps_hat`` read off ``x``: ``x_high = (sigma_h / sigma_l) (x - alpha_l x0_hat)``, exact after one
    iteration."""
    at_low = _as_sampled(low)
    kind = "x0" if high.alpha == 0.0 else "eps"

    def update(d: Estimate) -> Tensor:
        anchored = Estimate.of(x, kind, d.x0 if kind == "x0" else d.eps, low.t, at_low)
        return ddim_step(anchored, low, high)

    x_high = update(denoiser.estimate(x, high.t, **cond))
    for _ in range(fixed_point_iters):
        x_high = update(denoiser.estimate(x_high, high.t, **cond))
    return x_high


def invert(
    denoiser: DenoiserBase,
    x0: Tensor,
    steps: int = 50,
    *,
    t: float = 1.0,
    grid: str | Tensor = "uniform",
    cond: dict[str, Any] | None = None,
    fixed_point_iters: int = 0,
    grid_options: dict[str, Any] | None = None,
    return_trajectory: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Encode data into the latent at time ``t`` with deterministic DDIM run forward in time.

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase` (schedule and prediction of any kind).
        x0: data ``(B, ...)``.
        steps: grid intervals (ignored when ``grid`` is a tensor).
        t: the latent's time (1 = pure noise end).
        grid: a registered grid name or a decreasing grid tensor ending at 0, the *sampling* grid;
            inversion walks it backwards, so :func:`decode` with the same grid is its inverse.
        cond: keyword arguments for every network call.
        fixed_point_iters: extra network calls per step refining the implicit inverse step (0: plain
            DDIM inversion, one call per step).
        return_trajectory: also return the states at every grid time, from ``x0`` upwards.

    Returns:
        the latent ``x_t`` ``(B, ...)`` in ``x0``'s dtype (and the trajectory when asked).
    """
    if not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
        raise ValueError(f"fixed_point_iters: expected an integer >= 0, got {fixed_point_iters!r}")
    times = grids_mod.resolve(grid, denoiser.schedule, steps, t, 0.0, **(grid_options or {}))
    if float(times[-1]) != 0.0:
        raise ValueError(f"grid: expected a sampling grid ending at t = 0, got grid[-1] = {float(times[-1])}")
    points = grid_points(denoiser.schedule, times)[::-1]
    x = x0
    trajectory = [x]
    for low, high in itertools.pairwise(points):
        x = _inverse_step(denoiser, x, low, high, fixed_point_iters, cond or {})
        if return_trajectory:
            trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def decode(
    denoiser: DenoiserBase,
    latent: Tensor,
    steps: int = 50,
    *,
    t: float = 1.0,
    grid: str | Tensor = "uniform",
    cond: dict[str, Any] | None = None,
    grid_options: dict[str, Any] | None = None,
) -> Tensor:
    """Decode a latent at time ``t`` (from :func:`invert`) with deterministic DDIM over the same grid."""
    times = grids_mod.resolve(grid, denoiser.schedule, steps, t, 0.0, **(grid_options or {}))
    return sample_ddim(denoiser, latent, times, cond=cond or {}, generator=None, callback=None, eta=0.0)


def interpolate(
    z1: Tensor,
    z2: Tensor,
    alphas: Sequence[float] | Tensor,
    method: Literal["slerp", "lerp"] = "slerp",
) -> Tensor:
    """Interpolate between two latents of the same shape ``S``.

    ``slerp``: ``sin((1 - a) theta) / sin(theta) z1 + sin(a theta) / sin(theta) z2`` with ``theta`` the angle
    between the flattened latents (keeps the norm of Gaussian latents near ``sqrt(dim)``; falls back to
    ``lerp`` when they are parallel). ``lerp``: ``(1 - a) z1 + a z2``.

    Returns:
        ``(len(alphas), *S)``: one latent per weight ``a`` (0 gives ``z1``, 1 gives ``z2``).
    """
    if z1.shape != z2.shape:
        raise ValueError(f"z1, z2: expected equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    a = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    if a.numel() < 1:
        raise ValueError("alphas: expected at least one interpolation weight")
    if method not in ("slerp", "lerp"):
        raise ValueError(f"method: expected 'slerp' or 'lerp', got {method!r}")
    a = a.to(z1.device).reshape((-1,) + (1,) * z1.ndim)
    u, v = z1.to(torch.float64), z2.to(torch.float64)
    w1, w2 = 1.0 - a, a
    if method == "slerp":
        cos = (u * v).sum() / (u.norm() * v.norm()).clamp_min(1e-300)
        theta = torch.arccos(cos.clamp(-1.0, 1.0))
        sin = torch.sin(theta)
        if float(sin) > 1e-6 * math.pi:  # interpolation weights are host-side anyway: one sync is fine
            w1, w2 = torch.sin((1.0 - a) * theta) / sin, torch.sin(a * theta) / sin
    return (w1 * u + w2 * v).to(z1.dtype)
