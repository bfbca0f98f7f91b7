"""Noise schedules of discrete (masked / uniform) diffusion in continuous time.

Time runs from data to noise: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise. A discrete schedule
is the probability ``alpha(t)`` that a token is still untouched at time ``t`` (Austin et al. 2021; the
``alpha_t`` of MDLM, Sahoo et al. 2024, Eq. 2): ``alpha(0) = 1`` and ``alpha(1) = 0``, decreasing in between.
The absorbing process replaces a touched token with ``[MASK]``; the uniform process with a uniform draw.

Every schedule gives ``alpha``, its derivative ``d_alpha`` and the inverse ``t_from_alpha`` (the
first-hitting sampler needs it). All methods take a tensor of any shape and return one of that shape,
computed in its dtype.

Names for :func:`get_discrete_schedule`:

- ``log-linear``: ``alpha = 1 - t`` (total noise ``-log(1 - t)`` is log-linear; MDLM/BD3-LM's default).
- ``linear``: total noise ``sigma(t) = sigma_max * t`` linear in time, renormalised so that ``alpha(1) = 0``:
  ``alpha = (exp(-sigma_max t) - exp(-sigma_max)) / (1 - exp(-sigma_max))``.
- ``cosine``: ``alpha = cos(pi t / 2)`` (Shi et al. 2024, MD4's cosine).
- ``polynomial``: ``alpha = 1 - t^p`` (MD4's polynomial schedule; ``p = 1`` is log-linear).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from diffcore.registry import Registry

__all__ = [
    "DISCRETE_SCHEDULES",
    "Cosine",
    "DiscreteSchedule",
    "Linear",
    "LogLinear",
    "Polynomial",
    "available_discrete_schedules",
    "get_discrete_schedule",
]


class DiscreteSchedule(ABC):
    """Probability ``alpha(t)`` that a token is uncorrupted at time ``t``; ``alpha(0) = 1``, ``alpha(1) = 0``."""

    name: str = "discrete-schedule"

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Keep probability at ``t`` (any shape)."""

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor:
        """``d alpha / dt`` (non-positive)."""

    @abstractmethod
    def t_from_alpha(self, alpha: Tensor) -> Tensor:
        """The time at which the keep probability equals ``alpha`` (inverse of :meth:`alpha`)."""

    def one_minus_alpha(self, t: Tensor) -> Tensor:
        """``1 - alpha(t)``, the corruption probability; subclasses give a form accurate near ``t = 0``."""
        return 1.0 - self.alpha(t)

    def masked_weight(self, t: Tensor) -> Tensor:
        """``-alpha'(t) / (1 - alpha(t))``: the weight of a masked token's cross-entropy in the NELBO.

        MDLM (Sahoo et al. 2024) Eq. 10; infinite at ``t = 0`` (never sample ``t = 0`` for the loss).
        """
        return -self.d_alpha(t) / self.one_minus_alpha(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LogLinear(DiscreteSchedule):
    """``alpha(t) = 1 - t``: the log-linear total-noise schedule of SEDD, MDLM and BD3-LM."""

    name = "log-linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def d_alpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def t_from_alpha(self, alpha: Tensor) -> Tensor:
        return 1.0 - alpha

    def one_minus_alpha(self, t: Tensor) -> Tensor:
        return t


class Linear(DiscreteSchedule):
    """Total noise linear in time, ``sigma(t) = sigma_max t``, renormalised so that ``alpha(1) = 0``."""

    name = "linear"

    def __init__(self, sigma_max: float = 10.0) -> None:
        if not sigma_max > 0:
            raise ValueError(f"sigma_max: expected > 0, got {sigma_max}")
        self.sigma_max = float(sigma_max)
        self._floor = math.exp(-self.sigma_max)

    def alpha(self, t: Tensor) -> Tensor:
        return (torch.exp(-self.sigma_max * t) - self._floor) / (1.0 - self._floor)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -self.sigma_max * torch.exp(-self.sigma_max * t) / (1.0 - self._floor)

    def t_from_alpha(self, alpha: Tensor) -> Tensor:
        return -torch.log(alpha * (1.0 - self._floor) + self._floor) / self.sigma_max

    def one_minus_alpha(self, t: Tensor) -> Tensor:
        return -torch.expm1(-self.sigma_max * t) / (1.0 - self._floor)

    def __repr__(self) -> str:
        return f"Linear(sigma_max={self.sigma_max})"


class Cosine(DiscreteSchedule):
    """``alpha(t) = cos(pi t / 2)``."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t).clamp(min=0.0)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def t_from_alpha(self, alpha: Tensor) -> Tensor:
        return torch.arccos(alpha.clamp(0.0, 1.0)) * (2.0 / math.pi)

    def one_minus_alpha(self, t: Tensor) -> Tensor:
        return 2.0 * torch.sin(0.25 * math.pi * t) ** 2


class Polynomial(DiscreteSchedule):
    """``alpha(t) = 1 - t^p`` (``p > 0``)."""

    name = "polynomial"

    def __init__(self, power: float = 2.0) -> None:
        if not power > 0:
            raise ValueError(f"power: expected > 0, got {power}")
        self.power = float(power)

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t.clamp(min=0.0) ** self.power

    def d_alpha(self, t: Tensor) -> Tensor:
        return -self.power * t.clamp(min=0.0) ** (self.power - 1.0)

    def t_from_alpha(self, alpha: Tensor) -> Tensor:
        return (1.0 - alpha).clamp(min=0.0) ** (1.0 / self.power)

    def one_minus_alpha(self, t: Tensor) -> Tensor:
        return t.clamp(min=0.0) ** self.power

    def __repr__(self) -> str:
        return f"Polynomial(power={self.power})"


DISCRETE_SCHEDULES: Registry[Callable[..., DiscreteSchedule]] = Registry("discrete schedule")
DISCRETE_SCHEDULES.add("log-linear", LogLinear)
DISCRETE_SCHEDULES.add("linear", Linear)
DISCRETE_SCHEDULES.add("cosine", Cosine)
DISCRETE_SCHEDULES.add("polynomial", Polynomial)


def available_discrete_schedules() -> list[str]:
    """Names accepted by :func:`get_discrete_schedule`."""
    return DISCRETE_SCHEDULES.names()


def get_discrete_schedule(name: str, **kwargs: float) -> DiscreteSchedule:
    """Build a discrete schedule by name (see the module docstring); ``kwargs`` go to its constructor."""
    return DISCRETE_SCHEDULES.get(name)(**kwargs)
