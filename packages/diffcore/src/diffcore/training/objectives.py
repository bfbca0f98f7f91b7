"""Training objectives: each turns a batch into a scalar loss, the Trainer does not know which one runs.

Contract: ``objective(model, batch, generator=None) -> (loss, logs)`` where ``batch`` is a tensor ``x0``
``(B, ...)`` or a dict ``{"x": x0, **cond}`` (``cond`` goes to ``model(x_t, t, **cond)``), ``loss`` is a
scalar tensor and ``logs`` a dict of floats-to-be (detached tensors).

:class:`DiffusionObjective` covers the Gaussian-path family; the named constructors are the classic
objectives of the literature:

- :func:`ddpm` — DDPM ``L_simple`` (Ho et al. 2020, Eq. 14): eps-MSE on discrete steps;
- :func:`score_matching` — denoising score matching (Vincent 2011); single noise level or NCSN's
  multi-scale version with ``lambda(sigma) = sigma^2`` (Song & Ermon 2019, Eq. 6);
- :func:`v_loss`, :func:`x0_loss` — v- and x0-prediction (Salimans & Ho 2022);
- :func:`flow_matching` — conditional flow matching on the OT path (Lipman et al. 2023, Eq. 23) with
  optional mini-batch OT coupling (Tong et al. 2023);
- :func:`rectified_flow` — rectified flow (Liu et al. 2023), velocity ``eps - x0`` in our time direction.

:func:`flow_matching_loss` and :func:`conditional_flow_matching_loss` are Lipman et al.'s two losses written
out as functions of given samples (what :func:`flow_matching` computes on random draws is the second); tests
use them to check that both have the same gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.predictions import PathCoefficients, Prediction, check_prediction, convert, from_x0_eps
from diffcore.paths.schedules import VE, Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.training import time_sampling as timesteps_mod
from diffcore.training import weighting as weighting_mod
from diffcore.training.ot import ot_couple

NullCond = Mapping[str, Any]
"""For each conditioning key, the "no condition" value used by condition dropout: a scalar (e.g. the null
class index), a tensor broadcastable to one sample, or a callable ``value(cond_tensor) -> null tensor``."""


def split_batch(batch: Tensor | Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """``(x0, cond)`` from a tensor or a ``{"x": x0, **cond}`` dict."""
    if isinstance(batch, Tensor):
        return batch, {}
    if isinstance(batch, Mapping) and "x" in batch:
        cond = {k: v for k, v in batch.items() if k != "x"}
        return batch["x"], cond
    raise TypeError("batch: expected a tensor x0 or a dict with key 'x' (and conditioning keys)")


def drop_conditions(
    cond: dict[str, Any], null_cond: NullCond, p: float, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Classifier-free-guidance training (Ho & Salimans 2022): per sample, with probability ``p`` replace
    every conditioning entry named in ``null_cond`` by its null value (the same samples for all keys)."""
    if p <= 0 or not cond:
        return cond
    first = next(v for v in cond.values() if isinstance(v, Tensor))
    b, device = first.shape[0], first.device
    drop = torch.rand(b, device=device, generator=generator) < p
    out = dict(cond)
    for key, null in null_cond.items():
        if key not in cond:
            continue
        value = cond[key]
        null_value = _null_value(null, value)
        null_value = null_value.expand_as(value) if null_value.shape != value.shape else null_value
        mask = drop.reshape((b,) + (1,) * (value.ndim - 1))
        out[key] = torch.where(mask, null_value, value)
    return out


def _null_value(null: Any, value: Tensor) -> Tensor:
    """The null value of one conditioning entry, made on ``value``'s device without a host-to-device copy
    (a pageable copy waits for the GPU) where ``null`` is a Python scalar or already a tensor there."""
    if callable(null):
        return null(value)
    if isinstance(null, Tensor):
        return null.to(device=value.device, dtype=value.dtype, non_blocking=True)
    if isinstance(null, (bool, int, float)):
        return torch.full_like(value, null)
    return torch.as_tensor(null, device=value.device, dtype=value.dtype)


@dataclass
class DiffusionObjective:
    """Regression of a Gaussian-path quantity at random ``t``.

    Args:
        schedule: the path (a Schedule or a registered name).
        prediction: what the network outputs (eps | x0 | v | velocity | score).
        target: what the loss compares (defaults to ``prediction``); the output is converted through
            ``diffcore.paths.predictions`` when they differ.
        time_sampler: a ``diffcore.training.time_sampling`` sampler (or name) for ``t``.
        weighting: a ``diffcore.training.weighting`` function or name (``uniform``, ``min-snr``, ``edm``, ``sigmoid``,
            ``likelihood``: ``-1/2 d log_snr/dt`` on the eps-error, the continuous ELBO of Kingma et al. 2021, Eq. 17,
            for uniformly sampled ``t``).
        weighting_options: keyword arguments of a named weighting (``gamma=5``).
        cond_dropout: probability of replacing the condition by ``null_cond`` (CFG training).
        null_cond: per conditioning key, its null value (see :data:`NullCond`).
        ot_coupling: pair data and noise by the mini-batch OT plan before noising (flow matching).
    """

    schedule: Schedule | str
    prediction: Prediction = "eps"
    target: Prediction | None = None
    time_sampler: Callable[..., Tensor] | str = "uniform"
    weighting: weighting_mod.Weighting | str = "uniform"
    weighting_options: dict[str, Any] = field(default_factory=dict)
    cond_dropout: float = 0.0
    null_cond: NullCond = field(default_factory=dict)
    ot_coupling: bool = False

    def __post_init__(self) -> None:
        self.schedule = get_schedule(self.schedule) if isinstance(self.schedule, str) else self.schedule
        check_prediction(self.prediction)
        self.target = check_prediction(self.target or self.prediction)
        if isinstance(self.time_sampler, str):
            self.time_sampler = timesteps_mod.get(self.time_sampler)
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout: expected a probability in [0, 1], got {self.cond_dropout}")
        if self.cond_dropout > 0 and not self.null_cond:
            raise ValueError("null_cond: condition dropout needs the null value of each conditioning key")
        self._likelihood = self.weighting == "likelihood"
        if isinstance(self.weighting, str) and not self._likelihood:
            self.weighting = weighting_mod.get(self.weighting, **self.weighting_options)

    def _weights(self, t: Tensor, c: PathCoefficients, log_snr: Tensor) -> Tensor:
        if self._likelihood:
            # -1/2 d lambda/dt on the eps-error; lambda' = 2 (alpha'/alpha - sigma'/sigma).
            d_log_snr = 2 * (c.d_alpha / c.alpha - c.d_sigma / c.sigma).reshape(-1)
            w_eps = (-0.5 * d_log_snr).nan_to_num(0.0, posinf=0.0, neginf=0.0)
            log_w_x0 = torch.log(w_eps.clamp_min(1e-30)) + log_snr
            return weighting_mod._from_x0_weight(log_w_x0, log_snr, self.target)
        return self.weighting(log_snr, self.target)

    def __call__(
        self,
        model: Callable[..., Tensor],
        batch: Tensor | Mapping[str, Any],
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        b = x0.shape[0]
        t = self.time_sampler(b, device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        if self.ot_coupling:
            noise = ot_couple(x0, noise)
        cond = drop_conditions(cond, self.null_cond, self.cond_dropout, generator)
        weighted, per_sample = self.per_sample_loss(model, x0, noise, t, cond)
        return weighted.mean(), {"loss_unweighted": per_sample.mean().detach()}

    def per_sample_loss(
        self, model: Callable[..., Tensor], x0: Tensor, noise: Tensor, t: Tensor, cond: Mapping[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """The loss of each sample at given times and noise: ``(w(t) * err, err)``, both ``(B,)``.

        ``x0``, ``noise``: ``(B, ...)``; ``t``: ``(B,)`` in [0, 1] (0 = data); ``err`` is the squared error of the
        target, averaged over every non-batch dimension, and ``w(t)`` the weighting. ``__call__`` draws ``t``
        and ``noise`` and averages the first over the batch; preference objectives (Diffusion-DPO) call this
        directly to give a winner and its loser the same ``t`` and noise."""
        b = x0.shape[0]
        t64 = t.double()
        c = PathCoefficients.at(self.schedule, t64, x0.ndim)
        cx = PathCoefficients(*(v.to(x0.dtype) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))
        x_t = cx.alpha * x0 + cx.sigma * noise
        out = model(x_t, t.to(x0.dtype) if x0.dtype == torch.float64 else t, **cond)
        if out.shape != x0.shape:
            raise ValueError(
                f"model output: expected shape {tuple(x0.shape)} (that of x), got {tuple(out.shape)}"
            )
        out = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        cf = PathCoefficients(*(v.to(out.dtype) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))
        if self.target != self.prediction:
            out = convert(out, self.prediction, self.target, x_t.to(out.dtype), cf)
        target = from_x0_eps(x0.to(out.dtype), noise.to(out.dtype), self.target, cf)
        per_sample = ((out - target) ** 2).reshape(b, -1).mean(1)
        log_snr = self.schedule.log_snr(t64).to(per_sample.dtype)
        w = self._weights(t64, c, log_snr).to(per_sample.dtype)
        return w * per_sample, per_sample


def flow_matching_loss(
    model: Callable[..., Tensor], x_t: Tensor, t: Tensor, velocity: Tensor, **cond: Any
) -> Tensor:
    """The flow-matching loss ``L_FM`` (Lipman et al. 2023, Eq. 5): ``mean_b ||v_theta(x_t, t) - u_t(x_t)||^2 / D``
    for ``x_t`` ``(B, ...)`` drawn from the marginal ``p_t``, times ``t`` ``(B,)`` and the marginal velocity
    ``velocity = u_t(x_t)`` (unknown in general; exact for analytic targets, e.g.
    ``GaussianMixture.denoiser(schedule, ...).velocity``)."""
    out = model(x_t, t, **cond)
    return ((out - velocity) ** 2).reshape(x_t.shape[0], -1).mean(1).mean()


def conditional_flow_matching_loss(
    model: Callable[..., Tensor],
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    schedule: Schedule | str = "rectified-flow",
    **cond: Any,
) -> Tensor:
    """The conditional flow-matching loss ``L_CFM`` (Lipman et al. 2023, Eq. 9 and, on the OT path, Eq. 23):
    ``mean_b ||v_theta(x_t, t) - u_t(x_t | x_0)||^2 / D`` with ``x_t = alpha_t x_0 + sigma_t noise`` and the
    conditional velocity ``u_t(x_t | x_0) = d_alpha x_0 + d_sigma noise`` (``noise - x0`` on the rectified-flow
    path, ``t = 0`` data). Its gradient equals that of :func:`flow_matching_loss` (their Theorem 2)."""
    sched = get_schedule(schedule) if isinstance(schedule, str) else schedule
    c = PathCoefficients.at(sched, t.double(), x0.ndim, x0.dtype)
    x_t = c.alpha * x0 + c.sigma * noise
    return flow_matching_loss(model, x_t, t, c.d_alpha * x0 + c.d_sigma * noise, **cond)


def ddpm(schedule: Schedule | str = "ddpm-linear", **kw: Any) -> DiffusionObjective:
    """DDPM ``L_simple`` (Ho et al. 2020, Eq. 14): eps-MSE at ``t = i/T``, ``i ~ U{1..T}``."""
    sched = get_schedule(schedule) if isinstance(schedule, str) else schedule
    steps = getattr(sched, "num_steps", 1000)
    kw.setdefault("time_sampler", timesteps_mod.Discrete(steps))
    return DiffusionObjective(sched, prediction="eps", **kw)


def score_matching(
    sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int | None = None, **kw: Any
) -> DiffusionObjective:
    """Denoising score matching on the VE path (Vincent 2011; Song & Ermon 2019, Eq. 6).

    The network predicts the score; ``lambda(sigma) = sigma^2`` weighting makes the loss
    ``||sigma s_theta + eps||^2`` (an eps-error of weight 1). ``num_scales=L`` gives NCSN's multi-scale
    objective over ``L`` geometric noise levels; ``None`` samples ``t`` continuously (score SDE).
    ``num_scales=1`` is single-level DSM at ``sigma_max``.
    """
    sched = VE(sigma_min=sigma_min, sigma_max=sigma_max)
    if num_scales is not None:
        if num_scales < 1:
            raise ValueError(f"num_scales: expected >= 1, got {num_scales}")
        sampler = timesteps_mod.Discrete(num_scales) if num_scales > 1 else timesteps_mod.Constant(1.0)
        kw.setdefault("time_sampler", sampler)
    # sigma^2 ||s - s*||^2 = ||eps_hat - eps||^2: compare in eps space with uniform weight.
    return DiffusionObjective(sched, prediction="score", target="eps", **kw)


def v_loss(schedule: Schedule | str = "vp-cosine", **kw: Any) -> DiffusionObjective:
    """v-prediction (Salimans & Ho 2022, Sec. 4)."""
    return DiffusionObjective(schedule, prediction="v", **kw)


def x0_loss(schedule: Schedule | str = "vp-cosine", **kw: Any) -> DiffusionObjective:
    """x0-prediction."""
    return DiffusionObjective(schedule, prediction="x0", **kw)


def flow_matching(ot_coupling: bool = False, **kw: Any) -> DiffusionObjective:
    """Conditional flow matching on the OT path ``x_t = (1 - t) x0 + t eps`` (Lipman et al. 2023, Eq. 23;
    their time runs the other way: their ``t`` is our ``1 - t``), target velocity ``eps - x0``;
    ``ot_coupling=True`` pairs data and noise by the mini-batch OT plan (Tong et al. 2023, OT-CFM)."""
    return DiffusionObjective("rectified-flow", prediction="velocity", ot_coupling=ot_coupling, **kw)


def rectified_flow(
    time_sampler: Callable[..., Tensor] | str = "logit-normal", **kw: Any
) -> DiffusionObjective:
    """Rectified flow (Liu et al. 2023) with SD3's logit-normal ``t`` by default (``"u-shaped"`` for the
    improved recipe of Lee et al. 2024)."""
    return DiffusionObjective("rectified-flow", prediction="velocity", time_sampler=time_sampler, **kw)
