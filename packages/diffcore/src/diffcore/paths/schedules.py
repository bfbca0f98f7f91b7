"""Noise schedules: the coefficients of the Gaussian path ``x_t = alpha(t) * x_0 + sigma(t) * eps``.

Time runs from data to noise: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise, for every
schedule (diffusion and flow alike). A discrete DDPM step ``i`` of ``T`` sits at ``t_i = i / T``.

Every schedule gives ``alpha``, ``sigma``, their time derivatives ``d_alpha``/``d_sigma``,
``log_snr = log(alpha^2 / sigma^2)`` and its inverse ``t_from_log_snr``, so every sampler and objective
works with every schedule. Methods take a tensor ``t`` of any shape and return a tensor of that shape;
they compute in the dtype of ``t`` (pass float64 for tables and grids).

Names for :func:`get`: ``vp-linear``, ``vp-cosine``, ``vp-scaled-linear`` (continuous VP),
``ddpm-linear``, ``ddpm-cosine``, ``ddpm-scaled-linear`` (discrete 1000-step beta tables), ``ve``,
``edm``, ``rectified-flow``. Wrappers: :class:`ZeroTerminalSNR` (Lin et al. 2024) and
:class:`Shifted` (SD3's resolution / sequence-length shift).
"""

from __future__ import annotations

import functools
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from diffcore.registry import Registry

__all__ = [
    "EDM",
    "SCHEDULES",
    "VE",
    "DiscreteVP",
    "RectifiedFlow",
    "Schedule",
    "Shifted",
    "SubVP",
    "VPCosine",
    "VPLinear",
    "VPScaledLinear",
    "ZeroTerminalSNR",
    "available",
    "betas_for",
    "check_time",
    "get",
    "memoise_per_schedule",
    "register",
    "resolution_shift",
]


SIGMA_FLOOR = 1e-4
"""VP schedules have ``d sigma / dt = inf`` at ``t = 0``; derivatives divide by ``max(sigma, SIGMA_FLOOR)``
so that velocities stay finite (also in float16) at the very edge. Away from ``t < 1e-8`` nothing changes."""


_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def memoise_per_schedule(
    maxsize: int,
) -> Callable[[Callable[[Schedule, _Key], _Value]], Callable[[Schedule, _Key], _Value]]:
    """Memoise ``fn(schedule, key)`` (host-side evaluations of a schedule at fixed times) in an LRU cache.

    Schedules are immutable, so their values at given times can be reused across sampling calls. A
    learnable schedule (an ``nn.Module``, whose parameters change) or an unhashable one is evaluated every
    time instead."""

    def decorate(fn: Callable[[Schedule, _Key], _Value]) -> Callable[[Schedule, _Key], _Value]:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def memoised(schedule: Schedule, key: _Key) -> _Value:
            if isinstance(schedule, torch.nn.Module):
                return fn(schedule, key)
            try:
                return cached(schedule, key)
            except TypeError:  # unhashable schedule
                return fn(schedule, key)

        return memoised

    return decorate


def check_time(t: Tensor | float, name: str = "t") -> None:
    """Raise a ValueError unless every time in ``t`` lies in [0, 1] (``t = 0`` data, ``t = 1`` noise).

    Checked where the values are on the host, so that no check ever synchronises with a device: python
    numbers and CPU tensors. A CUDA tensor is not read here (that would stall the device inside training and
    sampling loops); the times the library draws itself (training, distillation) are in range by
    construction, and samplers work with python-float times, which are checked."""
    if isinstance(t, Tensor):
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name}: expected real times, got a {t.dtype} tensor")
        if t.device.type != "cpu" or t.numel() == 0:
            return
        inside = (t >= 0) & (t <= 1)  # False for NaN
        if not bool(inside.all()):
            bad = t[~inside].reshape(-1)[:3].tolist()
            raise ValueError(
                f"{name}: expected times in [0, 1] (t = 0 is data, t = 1 noise), got values such as {bad}"
            )
        return
    if not isinstance(t, numbers.Real) or isinstance(t, bool):
        raise TypeError(f"{name}: expected a float or a tensor of times, got {type(t).__name__}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"{name}: expected a time in [0, 1] (t = 0 is data, t = 1 noise), got {t!r}")


def _lambda_tensor(log_snr: Tensor | float) -> Tensor:
    """A log-SNR value as a tensor (python numbers as float64 scalars); any real value, +-inf included."""
    return log_snr if isinstance(log_snr, Tensor) else torch.tensor(log_snr, dtype=torch.float64)


def _as_tensor(t: Tensor | float) -> Tensor:
    """``t`` as a tensor (python numbers as float64 scalars), checked to lie in [0, 1] (:func:`check_time`)."""
    check_time(t)
    return t if isinstance(t, Tensor) else torch.tensor(t, dtype=torch.float64)


class Schedule(ABC):
    """A Gaussian probability path. Subclasses implement ``alpha``, ``sigma`` and their derivatives."""

    name: str = "schedule"

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal coefficient; 1 at ``t = 0`` (VE/EDM: always 1)."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise coefficient; grows with ``t``."""

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor:
        """``d alpha / dt``."""

    @abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor:
        """``d sigma / dt``."""

    @property
    def variance_preserving(self) -> bool:
        """True when ``alpha^2 + sigma^2 = 1`` (the VP family)."""
        return False

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda(t) = log(alpha^2 / sigma^2)``; ``+inf`` where sigma = 0, ``-inf`` where alpha = 0."""
        t = _as_tensor(t)
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` by bisection (float64, 64 halvings); subclasses override with closed forms."""
        lam = _lambda_tensor(log_snr).to(torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # log_snr decreases in t: the root lies to the right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).to(
            _lambda_tensor(log_snr).dtype if _lambda_tensor(log_snr).is_floating_point() else torch.float64
        )

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, sigma, d_alpha, d_sigma)`` at ``t``."""
        t = _as_tensor(t)
        return self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------------------------
# Variance-preserving schedules: alpha = sqrt(abar(t)), sigma = sqrt(1 - abar(t)).
# --------------------------------------------------------------------------------------------


class _VP(Schedule):
    """VP schedules from ``log abar(t)`` and its derivative; ``alpha^2 + sigma^2 = 1``."""

    @property
    def variance_preserving(self) -> bool:
        return True

    @abstractmethod
    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """``log abar(t)``, 0 at ``t = 0``, decreasing."""

    @abstractmethod
    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        """``d log abar / dt`` (= ``-beta(t)`` in the SDE of Song et al. 2021)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(_as_tensor(t)))

    def sigma(self, t: Tensor) -> Tensor:
        # -expm1(x) = 1 - exp(x) stays accurate for small |x| (t near 0).
        return torch.sqrt((-torch.expm1(self.log_alpha_bar(_as_tensor(t)))).clamp_min(0.0))

    def d_alpha(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return 0.5 * self.alpha(t) * self.d_log_alpha_bar(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        # d sigma = -abar * dlog(abar) / (2 sigma); sigma = 0 only at t = 0, where the derivative is
        # +inf (sigma ~ sqrt(t)); a floor on sigma keeps it finite there (see SIGMA_FLOOR).
        t = _as_tensor(t)
        abar = torch.exp(self.log_alpha_bar(t))
        return -abar * self.d_log_alpha_bar(t) / (2.0 * self.sigma(t).clamp_min(SIGMA_FLOOR))

    def log_snr(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        lab = self.log_alpha_bar(t)
        return lab - torch.log(-torch.expm1(lab))

    def beta(self, t: Tensor) -> Tensor:
        """Continuous-time ``beta(t) = -d log abar / dt`` (the VP SDE's drift rate)."""
        return -self.d_log_alpha_bar(_as_tensor(t))


class VPLinear(_VP):
    """Continuous VP with linear ``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021, Eq. 33).

    The defaults (0.1, 20) are the continuous counterpart of DDPM's linear table 1e-4..0.02 over 1000 steps.
    """

    name = "vp-linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(
                f"beta_min, beta_max: expected 0 < beta_min < beta_max, got {beta_min}, {beta_max}"
            )
        self.beta_min, self.beta_max = beta_min, beta_max

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min + (self.beta_max - self.beta_min) * t)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # log abar = -log(1 + exp(-lambda)); solve 0.5 (bmax - bmin) t^2 + bmin t - c = 0.
        lam = _lambda_tensor(log_snr)
        c = torch.nn.functional.softplus(-lam)
        a = 0.5 * (self.beta_max - self.beta_min)
        # Log-SNRs beyond lambda(1) map to t = 1, as every other schedule's inverse clamps to [0, 1].
        return ((-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * c)) / (2 * a)).clamp(0, 1)

    def __repr__(self) -> str:
        return f"VPLinear(beta_min={self.beta_min}, beta_max={self.beta_max})"


class VPScaledLinear(_VP):
    """Continuous counterpart of Stable Diffusion's "scaled linear" table (linear in sqrt(beta)).

    ``beta(t) = T * (sqrt(b0) + t (sqrt(b1) - sqrt(b0)))^2`` with ``T = 1000``, ``b0 = 0.00085``, ``b1 = 0.012``.
    """

    name = "vp-scaled-linear"

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.012, num_steps: int = 1000) -> None:
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(
                f"beta_start, beta_end: expected 0 < start < end < 1, got {beta_start}, {beta_end}"
            )
        self.a = math.sqrt(beta_start)
        self.b = math.sqrt(beta_end) - math.sqrt(beta_start)
        self.T = num_steps

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        return -self.T * ((self.a + self.b * t) ** 3 - self.a**3) / (3 * self.b)

    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        return -self.T * (self.a + self.b * t) ** 2


class VPCosine(_VP):
    """The cosine schedule of Nichol & Dhariwal 2021 (Eq. 17): ``abar(t) = f(t) / f(0)``,
    ``f(t) = cos(((t + s) / (1 + s)) * pi / 2)^2``.

    ``abar(1) = 0`` exactly (zero terminal SNR); ``t_max`` (default 1) may cut the end.
    """

    name = "vp-cosine"

    def __init__(self, s: float = 0.008) -> None:
        if s < 0:
            raise ValueError(f"s: expected >= 0, got {s}")
        self.s = s

    def _angle(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def _cos_angle(self, t: Tensor) -> Tensor:
        # cos(u) written as sin(pi/2 - u) so that it is exactly 0 at t = 1 (cos(pi/2) rounds to 6e-17).
        return torch.sin((1 - t) / (1 + self.s) * (math.pi / 2))

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2)
        return 2 * (torch.log(self._cos_angle(t).clamp_min(0.0)) - math.log(f0))

    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        # d/dt 2 log cos(u) = -2 tan(u) du/dt; infinite at t = 1 (alpha reaches 0 there).
        return -2 * torch.tan(self._angle(t)) * (math.pi / 2) / (1 + self.s)

    def alpha(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2)
        return (self._cos_angle(t) / f0).clamp(0.0, 1.0)

    def d_alpha(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2)
        return -torch.sin(self._angle(t)) * (math.pi / 2) / (1 + self.s) / f0

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0.0))

    def d_sigma(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        a, s = self.alpha(t), self.sigma(t)
        return -a * self.d_alpha(t) / s.clamp_min(SIGMA_FLOOR)

    def log_snr(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        a, s = self.alpha(t), self.sigma(t)
        return 2 * (torch.log(a) - torch.log(s))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        lam = _lambda_tensor(log_snr)
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2)
        alpha = torch.sqrt(torch.sigmoid(lam))
        return (torch.acos((alpha * f0).clamp(-1, 1)) * 2 / math.pi * (1 + self.s) - self.s).clamp(0, 1)


def betas_for(kind: str, num_steps: int = 1000, **kw: float) -> Tensor:
    """The DDPM beta tables (float64): ``linear`` (Ho et al. 2020), ``scaled_linear`` (Stable Diffusion),
    ``cosine`` (Nichol & Dhariwal 2021, betas clipped at 0.999)."""
    if num_steps < 1:
        raise ValueError(f"num_steps: expected >= 1, got {num_steps}")
    if kind == "linear":
        start, end = (
            kw.get("beta_start", 1e-4) * 1000 / num_steps,
            kw.get("beta_end", 0.02) * 1000 / num_steps,
        )
        return torch.linspace(start, end, num_steps, dtype=torch.float64)
    if kind == "scaled_linear":
        start, end = kw.get("beta_start", 0.00085), kw.get("beta_end", 0.012)
        return torch.linspace(start**0.5, end**0.5, num_steps, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = kw.get("s", 0.008)
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=kw.get("max_beta", 0.999))
    raise ValueError(f"kind: expected one of linear, scaled_linear, cosine, got {kind!r}")


class DiscreteVP(_VP):
    """A discrete DDPM beta table ``beta_1..beta_T`` placed on continuous time at ``t_i = i / T``.

    ``log abar`` is interpolated linearly in ``t`` between table points, with ``abar(0) = 1``; at table
    points it equals ``cumsum(log(1 - beta))`` exactly (what diffusers' schedulers use).
    """

    def __init__(self, betas: Tensor, name: str = "ddpm") -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas: expected a 1-D table, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas: expected values in (0, 1]")
        self.betas = betas
        self.num_steps = len(betas)
        self.name = name
        with torch.no_grad():
            log_abar = torch.cumsum(torch.log1p(-betas.clamp(max=1 - 1e-20)), 0)
        self._table = torch.cat([torch.zeros(1, dtype=torch.float64), log_abar])  # index i -> t = i / T

    @property
    def alphas_cumprod(self) -> Tensor:
        """``abar_i`` for ``i = 1..T`` (float64)."""
        return torch.exp(self._table[1:])

    def _locate(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        table = self._table.to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float64)
        pos = t.clamp(0, 1) * self.num_steps
        i0 = pos.floor().long().clamp(max=self.num_steps - 1)
        frac = pos - i0.to(pos.dtype)
        return table, i0, frac

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        table, i0, frac = self._locate(t)
        return table[i0] + frac * (table[i0 + 1] - table[i0])

    def d_log_alpha_bar(self, t: Tensor) -> Tensor:
        table, i0, _ = self._locate(t)
        return (table[i0 + 1] - table[i0]) * self.num_steps

    def __repr__(self) -> str:
        return f"DiscreteVP(name={self.name!r}, num_steps={self.num_steps})"


# --------------------------------------------------------------------------------------------
# Variance-exploding and flow schedules.
# --------------------------------------------------------------------------------------------


class VE(Schedule):
    """SMLD / score-SDE VE path (Song et al. 2021, Eq. 31): ``alpha = 1``, ``sigma = s_min (s_max / s_min)^t``.

    ``t = 0`` is data up to ``sigma_min`` of noise (the SMLD convention); samplers return the denoised
    estimate at their last step.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"sigma_min, sigma_max: expected 0 < min < max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(_as_tensor(t))

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_as_tensor(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(self._log_ratio * _as_tensor(t))

    def d_sigma(self, t: Tensor) -> Tensor:
        return self.sigma(t) * self._log_ratio

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        sigma = torch.exp(-0.5 * _lambda_tensor(log_snr))
        return (torch.log(sigma / self.sigma_min) / self._log_ratio).clamp(0, 1)

    def __repr__(self) -> str:
        return f"VE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class EDM(Schedule):
    """The EDM path (Karras et al. 2022, Table 1): ``alpha = 1``, ``sigma(t) = t * sigma_max``.

    EDM's own time is ``sigma``; here it is rescaled to [0, 1] so that ``t = 0`` is exactly clean data.
    Karras' rho-spaced steps are a time grid (``diffcore.sampling.grids``), not a schedule.
    """

    name = "edm"

    def __init__(self, sigma_max: float = 80.0, sigma_data: float = 0.5) -> None:
        if sigma_max <= 0:
            raise ValueError(f"sigma_max: expected > 0, got {sigma_max}")
        self.sigma_max, self.sigma_data = sigma_max, sigma_data

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(_as_tensor(t))

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_as_tensor(t))

    def sigma(self, t: Tensor) -> Tensor:
        return _as_tensor(t) * self.sigma_max

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.full_like(_as_tensor(t), self.sigma_max)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return (torch.exp(-0.5 * _lambda_tensor(log_snr)) / self.sigma_max).clamp(0, 1)

    def __repr__(self) -> str:
        return f"EDM(sigma_max={self.sigma_max})"


class RectifiedFlow(Schedule):
    """The optimal-transport / rectified-flow path (Lipman et al. 2023; Liu et al. 2023): ``alpha = 1 - t``,
    ``sigma = t``. (Flow-matching papers run time the other way, ``t = 1`` data; converted here once.)
    """

    name = "rectified-flow"

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - _as_tensor(t)

    def sigma(self, t: Tensor) -> Tensor:
        return _as_tensor(t) * 1

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.full_like(_as_tensor(t), -1.0)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(_as_tensor(t))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # alpha / sigma = (1 - t) / t = exp(lambda / 2)  =>  t = sigmoid(-lambda / 2)
        return torch.sigmoid(-0.5 * _lambda_tensor(log_snr))


class SubVP(Schedule):
    """The sub-VP path of Song et al. 2021 (Eq. 11 and 29): with ``B(t) = int_0^t beta``,
    ``alpha = exp(-B/2)`` and ``sigma = 1 - exp(-B)`` (the variance is bounded by the VP one), for the
    linear ``beta(t) = beta_min + t (beta_max - beta_min)``."""

    name = "sub-vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.vp = VPLinear(beta_min, beta_max)

    def alpha(self, t: Tensor) -> Tensor:
        return self.vp.alpha(t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.vp.d_alpha(t)

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(self.vp.log_alpha_bar(_as_tensor(t)))

    def d_sigma(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return -torch.exp(self.vp.log_alpha_bar(t)) * self.vp.d_log_alpha_bar(t)

    def __repr__(self) -> str:
        return f"SubVP(beta_min={self.vp.beta_min}, beta_max={self.vp.beta_max})"


# --------------------------------------------------------------------------------------------
# Wrappers.
# --------------------------------------------------------------------------------------------


class ZeroTerminalSNR(Schedule):
    """Rescale a VP schedule so that ``alpha(1) = 0`` (Lin et al. 2024, Algorithm 1).

    ``alpha'(t) = (alpha(t) - alpha(1)) * alpha(0) / (alpha(0) - alpha(1))``, ``sigma' = sqrt(1 - alpha'^2)``.
    On a discrete table this equals Algorithm 1 applied to ``sqrt(abar)`` at the table points. At ``t = 1``
    the model must predict ``v`` or ``x0``: an eps-prediction carries no information about ``x0`` there.
    """

    def __init__(self, base: Schedule) -> None:
        if not base.variance_preserving:
            raise ValueError(f"base: zero terminal SNR rescales VP schedules, got {base!r}")
        self.base = base
        one, zero = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        self.a0 = float(base.alpha(zero))
        self.a1 = float(base.alpha(one))
        self.name = f"{getattr(base, 'name', 'vp')}+ztsnr"

    @property
    def variance_preserving(self) -> bool:
        return True

    def _scale(self) -> float:
        return self.a0 / (self.a0 - self.a1)

    def alpha(self, t: Tensor) -> Tensor:
        return ((self.base.alpha(_as_tensor(t)) - self.a1) * self._scale()).clamp(0.0, 1.0)

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.base.d_alpha(_as_tensor(t)) * self._scale()

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0.0))

    def d_sigma(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        s = self.sigma(t)
        return -self.alpha(t) * self.d_alpha(t) / s.clamp_min(SIGMA_FLOOR)

    def __repr__(self) -> str:
        return f"ZeroTerminalSNR({self.base!r})"


def resolution_shift(num_tokens: int, base_tokens: int = 256) -> float:
    """SD3's resolution-dependent shift (Esser et al. 2024, Sec. 5.3.2): ``sqrt(m / n)`` for ``m`` tokens
    against a base resolution of ``n`` tokens (SD3 uses 1024^2 images against a 256^2 base -> 3.0 nominal)."""
    if num_tokens < 1 or base_tokens < 1:
        raise ValueError(f"num_tokens, base_tokens: expected >= 1, got {num_tokens}, {base_tokens}")
    return math.sqrt(num_tokens / base_tokens)


class Shifted(Schedule):
    """Shift a schedule towards noise by ``shift``: ``log_snr'(t) = log_snr(t) - 2 log(shift)``.

    For rectified flow this is SD3's ``t' = shift t / (1 + (shift - 1) t)`` (Esser et al. 2024, Eq. 23).
    Implemented as a time warp ``t -> t'`` of the base schedule, so derivatives follow the chain rule.

    A warp cannot leave the base's time range: where ``log_snr(t) - 2 log(shift)`` falls outside the base's
    ``[log_snr(1), log_snr(0)]`` (a shift towards noise of a base with a finite terminal log-SNR, such as
    ``vp-linear`` near ``t = 1``), ``t'`` stays at the end point, the shifted schedule is flat there
    (``d_warp = 0``) and its terminal log-SNR is the base's.
    """

    def __init__(self, base: Schedule, shift: float) -> None:
        if shift <= 0:
            raise ValueError(f"shift: expected > 0, got {shift}")
        self.base, self.shift = base, shift
        self.name = f"{getattr(base, 'name', 'schedule')}+shift{shift:g}"

    @property
    def variance_preserving(self) -> bool:
        return self.base.variance_preserving

    def warp(self, t: Tensor) -> Tensor:
        """``t'`` with ``log_snr_base(t') = log_snr_base(t) - 2 log(shift)``."""
        t = _as_tensor(t)
        if isinstance(self.base, RectifiedFlow):
            return self.shift * t / (1 + (self.shift - 1) * t)
        lam = self.base.log_snr(t) - 2 * math.log(self.shift)
        return torch.where(torch.isfinite(lam), self.base.t_from_log_snr(lam).to(t.dtype), t)

    def d_warp(self, t: Tensor) -> Tensor:
        """``dt'/dt`` of :meth:`warp`: ``shift / (1 + (shift - 1) t)^2`` on rectified flow;
        ``lambda'(t) / lambda'(t')`` of the base's log-SNR ``lambda`` otherwise, with the finite limits at
        an end where the log-SNR is infinite."""
        t = _as_tensor(t)
        if isinstance(self.base, RectifiedFlow):
            return self.shift / (1 + (self.shift - 1) * t) ** 2
        # lambda(t') = lambda(t) - c  =>  dt'/dt = lambda'(t) / lambda'(t'); lambda' from a central difference of
        # log_snr (the function the warp inverts, also for interpolated tables).
        h = 1e-6
        tw = self.warp(t)

        def dlam(x: Tensor) -> Tensor:
            a, b = (x - h).clamp(0, 1), (x + h).clamp(0, 1)
            return (self.base.log_snr(b) - self.base.log_snr(a)) / (b - a)

        ratio = (dlam(t.to(torch.float64)) / dlam(tw.to(torch.float64))).to(t.dtype)
        # Where a difference touches an end with infinite lambda (t = 0; t = 1 under a zero terminal SNR) it is
        # inf / inf: take the ratio 1e-6 inside from the base's derivatives, lambda' = 2 (alpha'/alpha -
        # sigma'/sigma), which gives its limit at the end (shift^2 at t = 0 for a VP base).
        if not bool(torch.isfinite(ratio).all()):
            inner = t.to(torch.float64).clamp(1e-6, 1 - 1e-6)
            base = self.base

            def exact(x: Tensor) -> Tensor:
                return 2 * (base.d_alpha(x) / base.alpha(x) - base.d_sigma(x) / base.sigma(x))

            limit = (exact(inner) / exact(self.warp(inner).to(torch.float64))).to(t.dtype)
            ratio = torch.where(torch.isfinite(ratio), ratio, limit)
        # Where the shifted log-SNR is beyond the base's range the warp is held at an end point: flat.
        lam = self.base.log_snr(t) - 2 * math.log(self.shift)
        ends = self.base.log_snr(torch.tensor([1.0, 0.0], dtype=t.dtype, device=t.device))
        return torch.where((lam < ends[0]) | (lam > ends[1]), torch.zeros_like(ratio), ratio)

    def alpha(self, t: Tensor) -> Tensor:
        return self.base.alpha(self.warp(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.base.sigma(self.warp(t))

    def d_alpha(self, t: Tensor) -> Tensor:
        return self.base.d_alpha(self.warp(t)) * self.d_warp(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return self.base.d_sigma(self.warp(t)) * self.d_warp(t)

    def log_snr(self, t: Tensor) -> Tensor:
        return self.base.log_snr(self.warp(t))

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # log_snr'(t) = log_snr_base(t) - 2 log(shift): invert the base at the unshifted log-SNR.
        return self.base.t_from_log_snr(_lambda_tensor(log_snr) + 2 * math.log(self.shift))

    def __repr__(self) -> str:
        return f"Shifted({self.base!r}, shift={self.shift})"


# --------------------------------------------------------------------------------------------
# Registry.
# --------------------------------------------------------------------------------------------

SCHEDULES: Registry[Callable[..., Schedule]] = Registry("schedule")


def register(name: str, factory: Callable[..., Schedule], *, replace: bool = False) -> None:
    """Register a schedule factory under ``name`` for :func:`get` (a taken name needs ``replace=True``)."""
    SCHEDULES.add(name, factory, replace=replace)


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return SCHEDULES.names()


def get(name: str, **kwargs: float) -> Schedule:
    """A schedule by name, e.g. ``get("vp-cosine")``, ``get("ve", sigma_max=80)``, ``get("rectified-flow")``."""
    if isinstance(name, Schedule):
        return name
    return SCHEDULES.get(name)(**kwargs)


register("vp-linear", VPLinear)
register("vp-cosine", VPCosine)
register("vp-scaled-linear", VPScaledLinear)
register(
    "ddpm-linear",
    lambda num_steps=1000, **kw: DiscreteVP(betas_for("linear", num_steps, **kw), "ddpm-linear"),
)
register(
    "ddpm-scaled-linear",
    lambda num_steps=1000, **kw: DiscreteVP(
        betas_for("scaled_linear", num_steps, **kw), "ddpm-scaled-linear"
    ),
)
register(
    "ddpm-cosine",
    lambda num_steps=1000, **kw: DiscreteVP(betas_for("cosine", num_steps, **kw), "ddpm-cosine"),
)
register("sub-vp", SubVP)
register("ve", VE)
register("edm", EDM)
register("rectified-flow", RectifiedFlow)
