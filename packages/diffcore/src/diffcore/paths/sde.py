"""The SDE view of Gaussian paths (Song et al. 2021, "Score-Based Generative Modeling through SDEs").

A schedule ``x_t = alpha(t) x_0 + sigma(t) eps`` is the marginal of the linear forward SDE
``dx = f(t) x dt + g(t) dW`` with (Eq. 5; Kingma et al. 2021, App. A)::

    f(t) = d log alpha / dt,          g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2.

Its reverse-time SDE (Eq. 6) is ``dx = [f x - g^2 score] dt + g dW_bar`` and its probability-flow ODE
(Eq. 13) is ``dx/dt = f x - g^2 score / 2``, which equals the path velocity ``d_alpha x0 + d_sigma eps``.
:class:`VPSDE`, :class:`SubVPSDE` and :class:`VESDE` are the paper's three SDEs (Eq. 9, 11, 29-31) with
their own closed-form ``f`` and ``g``; tests check that they agree with the schedules' marginals.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.schedules import VE, Schedule, SubVP, VPLinear


def _t(t: Tensor | float) -> Tensor:
    return t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)


class SDE:
    """The linear forward SDE whose marginals are ``schedule``'s path (``t = 0`` data)."""

    def __init__(self, schedule: Schedule) -> None:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule: expected a Schedule, got {type(schedule).__name__}")
        self.schedule = schedule

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> SDE:
        """The SDE of any schedule, with ``f`` and ``g`` derived from ``alpha`` and ``sigma``."""
        return cls(schedule)

    def f(self, t: Tensor | float) -> Tensor:
        """Drift coefficient ``f(t) = alpha'(t) / alpha(t)`` (the drift is ``f(t) x``)."""
        t = _t(t)
        return self.schedule.d_alpha(t) / self.schedule.alpha(t)

    def g2(self, t: Tensor | float) -> Tensor:
        """Squared diffusion coefficient ``g(t)^2 = 2 sigma sigma' - 2 f sigma^2`` (clamped at 0)."""
        t = _t(t)
        s = self.schedule.sigma(t)
        return (2 * s * self.schedule.d_sigma(t) - 2 * self.f(t) * s**2).clamp_min(0.0)

    def g(self, t: Tensor | float) -> Tensor:
        """Diffusion coefficient ``g(t) = sqrt(g2(t))``."""
        return self.g2(t).sqrt()

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``f(t) x``, with ``t`` a float or a ``(B,)`` tensor."""
        return _bcast(self.f(t), x) * x

    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))``: ``x_t | x_0 ~ N(alpha x_0, sigma^2 I)``."""
        t = _t(t)
        return self.schedule.alpha(t), self.schedule.sigma(t)

    def reverse_drift(self, denoiser: DenoiserBase, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """Drift of the reverse-time SDE (Eq. 6), ``f x - g^2 score``, run backwards in time."""
        return self.drift(x, t) - _bcast(self.g2(t), x) * denoiser.score(x, t, **cond)

    def probability_flow(self, denoiser: DenoiserBase, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The probability-flow ODE velocity (Eq. 13), ``f x - g^2 score / 2``."""
        return self.drift(x, t) - 0.5 * _bcast(self.g2(t), x) * denoiser.score(x, t, **cond)

    def prior_sample(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None, **kw: Any
    ) -> Tensor:
        """A draw from ``N(0, sigma(1)^2 + alpha(1)^2)``, the marginal at ``t = 1`` of unit-variance data."""
        a, s = (float(v) for v in self.marginal(1.0))
        return math.sqrt(a * a + s * s) * torch.randn(shape, generator=generator, **kw)


def _bcast(c: Tensor, x: Tensor) -> Tensor:
    c = c.to(device=x.device, dtype=x.dtype)
    return c.reshape((-1,) + (1,) * (x.ndim - 1)) if c.ndim == 1 else c


class VPSDE(SDE):
    """VP SDE (Eq. 9/32): ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW``, ``beta`` linear; DDPM's limit."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        super().__init__(VPLinear(beta_min, beta_max))
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor | float) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021, Eq. 32)."""
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def f(self, t: Tensor | float) -> Tensor:
        return -0.5 * self.beta(t)

    def g2(self, t: Tensor | float) -> Tensor:
        return self.beta(t)


class SubVPSDE(VPSDE):
    """sub-VP SDE (Eq. 11): ``dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2 int_0^t beta))) dW``: the VP drift
    with a smaller diffusion."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        SDE.__init__(self, SubVP(beta_min, beta_max))
        self.beta_min, self.beta_max = beta_min, beta_max

    def g2(self, t: Tensor | float) -> Tensor:
        t = _t(t)
        integral = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        return self.beta(t) * -torch.expm1(-2 * integral)


class VESDE(SDE):
    """VE SDE (Eq. 30-31): ``dx = sqrt(d sigma^2 / dt) dW`` with geometric ``sigma(t)``; SMLD's limit."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        super().__init__(VE(sigma_min, sigma_max))
        self.log_ratio = math.log(sigma_max / sigma_min)

    def f(self, t: Tensor | float) -> Tensor:
        return torch.zeros_like(_t(t))

    def g2(self, t: Tensor | float) -> Tensor:
        return 2 * self.schedule.sigma(_t(t)) ** 2 * self.log_ratio
