"""Training-time samplers of ``t`` (``t = 0`` data, ``t = 1`` noise).

Each sampler is a small object ``sampler(n, device=..., generator=...) -> Tensor`` of shape ``(n,)``
in [0, 1] (float32). Register new ones with :func:`register`; :func:`get` builds one by name:
``uniform``, ``logit-normal``, ``u-shaped``, ``edm-lognormal``, ``discrete``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.registry import Registry


def _rand(n: int, device, generator) -> Tensor:
    return torch.rand(n, device=device, generator=generator, dtype=torch.float64)


@dataclass(frozen=True)
class Uniform:
    """``t ~ U[t_min, t_max]``; ``stratified`` draws one point per sub-interval of [t_min, t_max] (a
    low-discrepancy batch, Kingma et al. 2021 App. I.1) which lowers the variance of the loss estimate."""

    t_min: float = 0.0
    t_max: float = 1.0
    stratified: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.t_min < self.t_max <= 1:
            raise ValueError(
                f"t_min, t_max: expected 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}"
            )

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        u = _rand(n, device, generator)
        if self.stratified:
            u = (torch.arange(n, device=u.device, dtype=u.dtype) + u) / n
            u = u[torch.randperm(n, device=u.device, generator=generator)]
        return (self.t_min + (self.t_max - self.t_min) * u).float()


@dataclass(frozen=True)
class LogitNormal:
    """SD3's logit-normal density (Esser et al. 2024, Eq. 19): ``t = sigmoid(u)``, ``u ~ N(m, s^2)``."""

    m: float = 0.0
    s: float = 1.0

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        u = torch.randn(n, device=device, generator=generator, dtype=torch.float64)
        return torch.sigmoid(self.m + self.s * u).float()


@dataclass(frozen=True)
class UShaped:
    """The U-shaped density of improved rectified-flow training (Lee et al. 2024, Sec. 3.3):
    ``p(u) ∝ exp(a u) + exp(-a u)`` on ``u in [-1, 1]``, ``t = (u + 1) / 2``, sampled by inverting the CDF
    ``F(u) = (sinh(a u) + sinh(a)) / (2 sinh(a))``. More weight near both ends of the path."""

    a: float = 4.0

    def __post_init__(self) -> None:
        if self.a <= 0:
            raise ValueError(f"a: expected > 0, got {self.a}")

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        f = _rand(n, device, generator)
        u = torch.asinh((2 * f - 1) * math.sinh(self.a)) / self.a
        return ((u + 1) / 2).clamp(0, 1).float()


@dataclass(frozen=True)
class EDMLogNormal:
    """EDM's log-normal noise levels (Karras et al. 2022, Table 1): ``ln(sigma/alpha) ~ N(P_mean, P_std^2)``,
    mapped to ``t`` through the schedule's inverse log-SNR (``log_snr = -2 ln(sigma/alpha)``)."""

    schedule: Schedule
    p_mean: float = -1.2
    p_std: float = 1.2

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        ln_sigma = self.p_mean + self.p_std * torch.randn(
            n, device=device, generator=generator, dtype=torch.float64
        )
        return self.schedule.t_from_log_snr(-2 * ln_sigma).clamp(0, 1).float()


@dataclass(frozen=True)
class Discrete:
    """DDPM's discrete steps: ``t = i / T`` with ``i ~ U{1, ..., T}`` (Ho et al. 2020, Algorithm 1)."""

    num_steps: int = 1000

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps: expected >= 1, got {self.num_steps}")

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        i = torch.randint(1, self.num_steps + 1, (n,), device=device, generator=generator)
        return (i.double() / self.num_steps).float()


@dataclass(frozen=True)
class Constant:
    """A single time ``t`` (single-noise-level denoising score matching)."""

    t: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.t <= 1:
            raise ValueError(f"t: expected in [0, 1], got {self.t}")

    def __call__(self, n: int, device=None, generator=None) -> Tensor:
        return torch.full((n,), self.t, device=device, dtype=torch.float32)


TimeSampler = Callable[..., Tensor]

TIME_SAMPLERS: Registry[Callable[..., TimeSampler]] = Registry("time_sampler")
TIME_SAMPLERS.add("uniform", Uniform)
TIME_SAMPLERS.add("logit-normal", LogitNormal)
TIME_SAMPLERS.add("u-shaped", UShaped)
TIME_SAMPLERS.add("edm-lognormal", lambda schedule="edm", **kw: EDMLogNormal(get_schedule(schedule), **kw))
TIME_SAMPLERS.add("discrete", Discrete)
TIME_SAMPLERS.add("constant", Constant)


def register(name: str, factory: Callable[..., TimeSampler], *, replace: bool = False) -> None:
    """Register a time-sampler factory under ``name`` (a taken name needs ``replace=True``)."""
    TIME_SAMPLERS.add(name, factory, replace=replace)


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return TIME_SAMPLERS.names()


def get(name: str, **kwargs) -> TimeSampler:
    """A time sampler by name, e.g. ``get("logit-normal", m=0.0, s=1.0)``."""
    return TIME_SAMPLERS.get(name)(**kwargs)
