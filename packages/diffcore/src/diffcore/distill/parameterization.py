"""The boundary-condition parameterisation of a consistency function (Song et al. 2023, Sec. 3, Eq. 5).

A consistency model maps any point ``x_t`` of a probability-flow ODE trajectory to the trajectory's
start; it must be the identity at the smallest time ``t_min``. With a free network ``F`` this holds by
construction with ``f(x, t) = c_skip(t) x / alpha(t) + c_out(t) x0_F(x, t)``, where ``x0_F`` is the network's
data estimate (converted from whatever it predicts through :mod:`diffcore.paths.predictions`; LCM's form, Luo et
al. 2023, Eq. 9), and, in data-unit noise ``s = sigma / alpha`` (EDM's sigma),

    c_skip = sigma_data^2 / ((s - s_min)^2 + sigma_data^2),
    c_out  = (s - s_min) / sqrt((s - s_min)^2 + sigma_data^2),

so ``c_skip(t_min) = 1, c_out(t_min) = 0`` and, where ``alpha = 0`` (``s = inf``), ``c_skip = 0,
c_out = 1`` (Song et al. 2023, App. C, with ``c_out`` normalised to reach 1 at pure noise).

The skip connection carries ``x / alpha(t) = x0 + s eps``, the state in data units: Song et al. write ``f`` for
the variance-exploding path (``alpha = 1``), where ``x`` *is* in data units. Applying ``c_skip`` to ``x`` itself
on a path with ``alpha < 1`` (VP, rectified flow) would shrink the data part of the skip by ``alpha(t)``, so at
moderate noise (``c_skip`` near 1, ``c_out`` small) the network had to undo a 10-30% shrinkage through a
small ``c_out``; the one-step maps were then worst at low noise, and multistep sampling got worse with more
steps. The boundary condition is ``f(x, t_min) = x / alpha(t_min)`` (the identity in data units).

LCM's scalings (``timestep_scaling``, Luo et al. 2023, Eq. 9 and their released training code): the same formulas
in the time ``k (t - t_min)`` with ``k = 1000 timestep_scaling`` (the 1000-step DDPM index times 10 in LCM) in
place of ``s - s_min``, so ``c_skip`` is already below 3e-3 one thousandth of the time range above ``t_min`` and
``f`` is the network's own data estimate almost everywhere. A student made from its teacher's network (LCM,
LCM-LoRA) then starts as the teacher's denoiser, which is the consistency function near the boundary; the CM
skip above would instead start it as ``c_skip x / alpha + c_out x0_teacher``, which at moderate noise spreads each
trajectory's end too far (the skip keeps the noise, the teacher's estimate adds the data again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffcore.distill.teacher import coefficients
from diffcore.paths.denoiser import Denoiser, NetworkFn
from diffcore.paths.predictions import Prediction, check_prediction, to_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule


@dataclass
class ConsistencyParameterization:
    """``f(net, x, t) = c_skip(t) x / alpha(t) + c_out(t) x0_net(x, t)``.

    Args:
        schedule: the Gaussian path (a Schedule or a registered name).
        prediction: what the raw network predicts (eps, x0, v, velocity or score).
        t_min: the boundary time where ``f`` is the identity in data units, ``f = x / alpha`` (> 0; the ODE is
            not integrated below it).
        sigma_data: the data standard deviation of the c_skip/c_out formulas (0.5 in EDM and CM).
        timestep_scaling: ``None`` (CM's scalings in the data-unit noise ``s``) or LCM's factor (10 in LCM and
            LCM-LoRA): the scalings in ``1000 timestep_scaling (t - t_min)`` instead (see the module docstring).
    """

    schedule: Schedule | str
    prediction: Prediction = "x0"
    t_min: float = 2e-3
    sigma_data: float = 0.5
    timestep_scaling: float | None = None

    def __post_init__(self) -> None:
        self.schedule = get_schedule(self.schedule) if isinstance(self.schedule, str) else self.schedule
        check_prediction(self.prediction)
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min: expected a time in (0, 1), got {self.t_min}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data: expected > 0, got {self.sigma_data}")
        if self.timestep_scaling is not None and not self.timestep_scaling > 0:
            raise ValueError(f"timestep_scaling: expected > 0 or None, got {self.timestep_scaling}")
        t = torch.tensor(self.t_min, dtype=torch.float64)
        self._s_min = float(self.schedule.sigma(t) / self.schedule.alpha(t))

    def scalings(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(c_skip, c_out)`` at times ``t`` (any shape), float64; times below ``t_min`` count as ``t_min``."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp_min(self.t_min)
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        infinite = alpha <= 0
        s = torch.where(infinite, torch.ones_like(sigma), sigma / torch.where(infinite, 1.0, alpha))
        if self.timestep_scaling is None:
            d = (s - self._s_min).clamp_min(0.0)
        else:  # LCM: the scalings' argument is the (scaled) time, not the noise level
            d = 1000.0 * self.timestep_scaling * (t - self.t_min)
        norm = d**2 + self.sigma_data**2
        c_skip = torch.where(infinite, torch.zeros_like(d), self.sigma_data**2 / norm)
        c_out = torch.where(infinite, torch.ones_like(d), d / norm.sqrt())
        return c_skip, c_out

    def __call__(self, net: NetworkFn, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """``f(x, t)`` for ``x: (B, ...)`` and ``t: (B,)``; differentiable through ``net``."""
        out = net(x, t, **cond)
        if out.shape != x.shape:
            raise ValueError(
                f"network output: expected shape {tuple(x.shape)} (that of x), got {tuple(out.shape)}"
            )
        out = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        xf = x.to(out.dtype)
        coeffs = coefficients(self.schedule, t, xf)
        x0, _ = to_x0_eps(out, self.prediction, xf, coeffs)
        shape = (-1,) + (1,) * (x.ndim - 1)
        c_skip, c_out = (c.to(out.dtype).reshape(shape) for c in self.scalings(t))
        alpha = coeffs.alpha.clamp_min(torch.finfo(out.dtype).tiny)  # c_skip = 0 wherever alpha = 0
        return c_skip * (xf / alpha) + c_out * x0

    def denoiser(self, net: NetworkFn) -> Denoiser:
        """A :class:`~diffcore.paths.denoiser.Denoiser` whose ``x0`` is ``f``: feed it to the ``consistency``
        or ``lcm`` sampler."""

        def fn(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
            return self(net, x, t, **cond)

        return Denoiser(fn, self.schedule, "x0")
