"""The flat torus [0, 1)^d and its wrapped normal distribution (fractional coordinates of crystals).

The wrapped normal with mean ``mu`` and scale ``sigma`` is the image of ``N(mu, sigma^2 I)`` under
``x -> x mod 1`` (Jing et al. 2022, torsional diffusion; DiffCSP, Jiao et al. 2023, Eq. 4). Per
coordinate its density is the periodic sum::

    p(x) = sum_{k in Z} N(x - mu + k; 0, sigma^2)

and its score ``d/dx log p`` is the posterior-weighted mean of the Gaussian scores of each image,
``sum_k w_k * (-(x - mu + k) / sigma^2)`` with ``w_k`` the softmax of the image log densities. The
sums are truncated to the images within ``ceil(6 sigma) + 2`` periods of the wrapped difference,
which leaves an error below ``exp(-18)`` relative to the largest term. All functions broadcast
over leading dimensions; ``x, mu: (..., d)`` and ``sigma`` broadcastable to ``(..., 1)`` or ``(..., d)``.

The torus is flat, so its Riemannian maps are those of R^d read modulo 1 (Chen & Lipman 2024, Riemannian flow
matching, Sec. 3.2 and App. E): ``exp_x(v) = (x + v) mod 1``, ``log_x(y)`` = the minimum-image difference
``y - x`` in [-1/2, 1/2)^d, and the geodesic from ``x`` to ``y`` is ``exp_x(s log_x(y))``, s in [0, 1], with
constant velocity ``log_x(y)``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "exp_map",
    "geodesic",
    "log_map",
    "wrap",
    "wrapped_difference",
    "wrapped_normal_log_prob",
    "wrapped_normal_sample",
    "wrapped_normal_score",
    "wrapped_normal_terms",
]


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Map coordinates into [0, 1)."""
    return x - torch.floor(x)


def wrapped_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Shortest signed difference ``x - y`` on the torus, in [-1/2, 1/2) (the minimum image)."""
    d = x - y
    return d - torch.floor(d + 0.5)


def exp_map(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``exp_x(v) = (x + v) mod 1``: follow the tangent vector ``v`` from ``x`` for unit time."""
    return wrap(x + v)


def log_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log_x(y)``: the tangent vector at ``x`` whose geodesic reaches ``y`` at unit time, the minimum-image
    difference ``y - x`` in [-1/2, 1/2) (so ``exp_map(x, log_map(x, y)) == y`` modulo 1)."""
    return wrapped_difference(y, x)


def geodesic(x: torch.Tensor, y: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """The point at fraction ``s`` of the shortest geodesic from ``x`` (s = 0) to ``y`` (s = 1):
    ``exp_x(s log_x(y))``; ``s`` broadcastable to ``x`` (e.g. ``(..., 1)``). Its velocity ``d/ds`` is
    ``log_x(y)``, the same at every ``s``."""
    return exp_map(x, s * log_map(x, y))


def _images(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences to every kept image ``d_k = wrapped(x - mu) + k`` and their Gaussian log densities."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if (sigma <= 0).any():
        raise ValueError(f"sigma: expected values > 0, got min {float(sigma.min())}")
    n = math.ceil(6.0 * float(sigma.max())) + 2
    k = torch.arange(-n, n + 1, dtype=x.dtype, device=x.device)
    d = wrapped_difference(x, mu)[..., None] + k
    s = sigma[..., None]
    log_n = -0.5 * (d / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
    return d, log_n


def wrapped_normal_log_prob(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Log density on [0, 1)^d (w.r.t. Lebesgue measure of volume 1), summed over the last dim: ``(...)``."""
    _, log_n = _images(x, mu, torch.as_tensor(sigma, dtype=x.dtype, device=x.device))
    return torch.logsumexp(log_n, dim=-1).sum(-1)


def wrapped_normal_score(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``grad_x log p(x | mu, sigma)``: ``(..., d)``. Periodic in ``x`` and 0 at ``x = mu`` and ``mu + 1/2``."""
    return wrapped_normal_terms(x, mu, sigma)[1]


def wrapped_normal_terms(
    x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, score)`` per coordinate, both ``(..., d)``, from one sum over images: the log density of each
    coordinate (``wrapped_normal_log_prob`` is their sum over the last dim) and :func:`wrapped_normal_score`."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    d, log_n = _images(x, mu, sigma)
    log_p = torch.logsumexp(log_n, dim=-1)
    s = sigma[..., None] if sigma.dim() > 0 else sigma
    return log_p, ((log_n - log_p[..., None]).exp() * (-d / s**2)).sum(-1)


def wrapped_normal_sample(
    mu: torch.Tensor, sigma: torch.Tensor | float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(mu + sigma z) mod 1``, ``z ~ N(0, I)``: exact samples, shape of ``mu``."""
    z = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return wrap(mu + torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device) * z)
