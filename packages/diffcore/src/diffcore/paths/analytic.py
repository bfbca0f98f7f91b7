"""Analytic targets: Gaussian mixtures whose noised marginals, exact denoisers and log densities are
known in closed form for every schedule. Tests and benchmarks check samplers, likelihoods and
distillation against these, not against stored numbers.

For a component ``N(mu_k, diag(v_k))`` and ``x_t = alpha x_0 + sigma eps``::

    x_t | k   ~ N(alpha mu_k, diag(alpha^2 v_k + sigma^2))
    E[x_0 | x_t, k] = mu_k + alpha v_k (x_t - alpha mu_k) / (alpha^2 v_k + sigma^2)
    grad log p_t(x_t) = sum_k r_k(x_t) * (alpha mu_k - x_t) / (alpha^2 v_k + sigma^2)

with responsibilities ``r_k`` (posterior component probabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffcore.paths.denoiser import Denoiser
from diffcore.paths.predictions import PathCoefficients, Prediction, from_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule


@dataclass
class GaussianMixture:
    """A mixture of diagonal Gaussians in ``D`` dimensions.

    weights: (K,) summing to 1; means: (K, D); variances: (K, D), all float64.
    """

    weights: Tensor
    means: Tensor
    variances: Tensor

    def __post_init__(self) -> None:
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.variances = torch.as_tensor(self.variances, dtype=torch.float64)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.variances.shape != (k, d):
            raise ValueError(
                f"weights, variances: expected shapes ({k},) and ({k}, {d}), "
                f"got {tuple(self.weights.shape)} and {tuple(self.variances.shape)}"
            )
        if not torch.isclose(self.weights.sum(), torch.tensor(1.0, dtype=torch.float64)):
            raise ValueError(f"weights: expected to sum to 1, got {float(self.weights.sum())}")
        if not bool((self.variances > 0).all()):
            raise ValueError("variances: expected > 0")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def gaussian(cls, mean: Tensor, variance: Tensor) -> GaussianMixture:
        """A single diagonal Gaussian."""
        mean = torch.as_tensor(mean, dtype=torch.float64)
        return cls(
            torch.ones(1), mean[None], torch.as_tensor(variance, dtype=torch.float64)[None].expand(1, -1)
        )

    @classmethod
    def random(cls, dim: int, components: int = 4, spread: float = 2.0, seed: int = 0) -> GaussianMixture:
        """A reproducible mixture with unequal weights, means of scale ``spread`` and variances in [0.05, 0.3]."""
        g = torch.Generator().manual_seed(seed)
        w = torch.rand(components, generator=g, dtype=torch.float64) + 0.5
        means = (
            spread
            * torch.randn(components, dim, generator=g, dtype=torch.float64)
            / math.sqrt(max(dim, 1) / 2)
        )
        var = 0.05 + 0.25 * torch.rand(components, dim, generator=g, dtype=torch.float64)
        return cls(w / w.sum(), means, var)

    @property
    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    @property
    def covariance(self) -> Tensor:
        """The mixture's full covariance (D, D)."""
        m = self.mean
        second = sum(
            w * (torch.diag(v) + torch.outer(mu, mu))
            for w, mu, v in zip(self.weights, self.means, self.variances)
        )
        return second - torch.outer(m, m)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples (n, D) in float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + z * self.variances[k].sqrt()

    def _marginal(self, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Means (B?, K, D) and variances of ``x_t | k`` for coefficients broadcast as (B, 1, 1) or scalars."""
        return alpha * self.means, alpha**2 * self.variances + sigma**2

    def _responsibilities(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        # log N(x; mean, var) summed over D, plus log weight: (B, K)
        diff = x[:, None, :] - mean
        logp = -0.5 * ((diff**2) / var + torch.log(2 * math.pi * var)).sum(-1) + torch.log(self.weights)
        return torch.softmax(logp, dim=-1)

    def log_prob(self, x: Tensor, schedule: Schedule | None = None, t: float | Tensor = 0.0) -> Tensor:
        """``log p_t(x)`` (B,) of the noised marginal at time ``t`` (``t = 0``: the data density)."""
        x = x.to(torch.float64)
        a, s = self._coeffs(schedule, t, x)
        mean, var = self._marginal(a, s)
        diff = x[:, None, :] - mean
        logp = -0.5 * ((diff**2) / var + torch.log(2 * math.pi * var)).sum(-1) + torch.log(self.weights)
        return torch.logsumexp(logp, dim=-1)

    def _coeffs(self, schedule: Schedule | None, t: float | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        if schedule is None:
            one = torch.ones((), dtype=torch.float64)
            return one, torch.zeros((), dtype=torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        a, s = schedule.alpha(t), schedule.sigma(t)
        if t.ndim == 1:
            a, s = a[:, None, None], s[:, None, None]
        return a, s

    def x0_eps(self, x: Tensor, schedule: Schedule, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """The exact ``(E[x_0 | x_t], E[eps | x_t])`` for ``x`` (B, D) at time ``t``, in float64."""
        x = x.to(torch.float64)
        a, s = self._coeffs(schedule, t, x)
        mean, var = self._marginal(a, s)
        r = self._responsibilities(x, mean, var)  # (B, K)
        resid = (x[:, None, :] - mean) / var  # (B, K, D) = -score_k
        score = -(r[..., None] * resid).sum(1)
        # eps = -sigma * score and x0 = mu_k + alpha v_k resid per component (no division by alpha or sigma).
        x0 = (r[..., None] * (self.means + a * self.variances * resid)).sum(1)
        s_b = s.reshape(-1, 1) if torch.as_tensor(s).ndim > 0 else s
        return x0, -s_b * score

    def score(self, x: Tensor, schedule: Schedule, t: float | Tensor) -> Tensor:
        """``grad log p_t(x)`` (B, D) in float64."""
        x = x.to(torch.float64)
        a, s = self._coeffs(schedule, t, x)
        mean, var = self._marginal(a, s)
        r = self._responsibilities(x, mean, var)
        return -(r[..., None] * (x[:, None, :] - mean) / var).sum(1)

    def network(self, schedule: Schedule | str, prediction: Prediction = "eps"):
        """An exact "network" ``fn(x, t) -> prediction`` for ``x`` of shape (B, D) (any dtype)."""
        sched = get_schedule(schedule) if isinstance(schedule, str) else schedule

        def fn(x: Tensor, t: Tensor) -> Tensor:
            flat = x.reshape(x.shape[0], -1).to(torch.float64)
            td = t.to(torch.float64)
            x0, eps = self.x0_eps(flat, sched, td)
            c = PathCoefficients.at(sched, td, 2)
            return from_x0_eps(x0, eps, prediction, c).to(x.dtype).reshape(x.shape)

        return fn

    def denoiser(self, schedule: Schedule | str, prediction: Prediction = "eps") -> Denoiser:
        """A :class:`~diffcore.paths.denoiser.Denoiser` around the exact network."""
        sched = get_schedule(schedule) if isinstance(schedule, str) else schedule
        return Denoiser(self.network(sched, prediction), sched, prediction)


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size sample sets (N, D), averaged over random
    unit directions (Rabin et al. 2011): ``sqrt(mean_theta W2^2(<x, theta>, <y, theta>))``."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    n = min(len(x), len(y))
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px = torch.sort(x[:n].to(torch.float64).cpu() @ theta, dim=0).values
    py = torch.sort(y[:n].to(torch.float64).cpu() @ theta, dim=0).values
    return float(((px - py) ** 2).mean().sqrt())
