"""The three Gaussians of a path ``x_t = alpha(t) x_0 + sigma(t) eps`` (``t`` in [0, 1], ``t = 0`` data), as
tensors at any times: the marginal ``q(x_t | x_0)``, the forward step ``q(x_t | x_s)`` from an earlier time
``s < t`` and the posterior ``q(x_s | x_t, x_0)`` (the reverse step a DDPM sampler draws from).

For a DDPM table with ``s = (i - 1) / T`` and ``t = i / T`` these are Ho et al. 2020's Eq. 4 (closed form),
Eq. 2 (one step, ``N(sqrt(1 - beta_i) x_{i-1}, beta_i)``) and Eq. 6-7 (posterior, ``mu-tilde``,
``beta-tilde``); written for any Gaussian path they are Kingma et al. 2021's Eq. 32-33 (VDM, Appendix A).
Samplers use the same formulas as python floats on a grid (``diffcore.sampling.steps``).

Times ``s``, ``t`` are floats or tensors of shape ``(B,)`` (one per sample of ``x`` ``(B, ...)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule

__all__ = ["forward_step", "marginal_sample", "posterior"]


def _coeff(schedule: Schedule, t: Tensor | float, x: Tensor, fn: str) -> Tensor:
    """``schedule.<fn>(t)`` in float64, shaped ``(B, 1, ...)`` for per-sample ``t`` and cast to ``x``'s dtype."""
    t = torch.as_tensor(t, dtype=torch.float64)
    value = getattr(schedule, fn)(t.cpu()).to(device=x.device)
    value = value.reshape((-1,) + (1,) * (x.ndim - 1)) if value.ndim == 1 else value
    return value.to(x.dtype)


def marginal_sample(schedule: Schedule, x0: Tensor, t: Tensor | float, noise: Tensor) -> Tensor:
    """A draw from ``q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)`` by the reparameterisation
    ``x_t = alpha_t x_0 + sigma_t noise`` (Ho et al. 2020, Eq. 4; ``noise`` standard normal, shaped like ``x0``)."""
    return _coeff(schedule, t, x0, "alpha") * x0 + _coeff(schedule, t, x0, "sigma") * noise


def forward_step(
    schedule: Schedule, x_s: Tensor, s: Tensor | float, t: Tensor | float
) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` of the forward step ``q(x_t | x_s) = N(a x_s, b^2 I)`` from ``s`` up to ``t > s``:
    ``a = alpha_t / alpha_s`` and ``b^2 = sigma_t^2 - a^2 sigma_s^2`` (Kingma et al. 2021, Eq. 32), so that
    composing steps gives the marginal. For a DDPM table and adjacent steps ``a = sqrt(1 - beta_i)`` and
    ``b^2 = beta_i`` (Ho et al. 2020, Eq. 2). Needs ``alpha_s > 0``; ``std`` has ``mean``'s shape after
    broadcasting with ``(B, 1, ...)`` coefficients."""
    a = _coeff(schedule, t, x_s, "alpha") / _coeff(schedule, s, x_s, "alpha")
    var = _coeff(schedule, t, x_s, "sigma") ** 2 - (a * _coeff(schedule, s, x_s, "sigma")) ** 2
    return a * x_s, var.clamp_min(0.0).sqrt()


def posterior(
    schedule: Schedule, x0: Tensor, x_t: Tensor, s: Tensor | float, t: Tensor | float
) -> tuple[Tensor, Tensor]:
    """``(mean, variance)`` of the posterior ``q(x_s | x_t, x_0)`` for ``s < t`` (Ho et al. 2020, Eq. 6-7;
    Kingma et al. 2021, Eq. 33)::

        mean = (a sigma_s^2 / sigma_t^2) x_t + (alpha_s b^2 / sigma_t^2) x_0,     variance = b^2 sigma_s^2 / sigma_t^2

    with ``a``, ``b^2`` of :func:`forward_step` (for a DDPM table: ``mu-tilde`` and ``beta-tilde``). Needs
    ``alpha_s > 0`` and ``sigma_t > 0``."""
    alpha_s, sigma_s = _coeff(schedule, s, x_t, "alpha"), _coeff(schedule, s, x_t, "sigma")
    alpha_t, sigma_t = _coeff(schedule, t, x_t, "alpha"), _coeff(schedule, t, x_t, "sigma")
    a = alpha_t / alpha_s
    b2 = (sigma_t**2 - (a * sigma_s) ** 2).clamp_min(0.0)
    mean = (a * sigma_s**2 / sigma_t**2) * x_t + (alpha_s * b2 / sigma_t**2) * x0
    return mean, b2 * sigma_s**2 / sigma_t**2
