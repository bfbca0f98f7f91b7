"""Consistency distillation (CD) and consistency training (CT) objectives.

Song et al. 2023, "Consistency Models" (Algorithms 2 and 3) and Song & Dhariwal 2023, "Improved
Techniques for Training Consistency Models" (iCT). Both minimise, over adjacent times ``t_n < t_{n+1}``
of a discretisation (:mod:`diffcore.distill.discretization`),

    lambda(t_n) d(f_theta(x_{t_{n+1}}, t_{n+1}), f_theta-(x_hat_{t_n}, t_n))

where ``f`` is the boundary-conditioned consistency function (:class:`ConsistencyParameterization`) and
``theta-`` is a target network (an EMA of ``theta``, or ``stopgrad(theta)`` when the EMA decay is 0,
as iCT recommends). CD takes ``x_hat_{t_n}`` from one step of a frozen teacher's probability-flow ODE;
CT takes ``x_hat_{t_n} = alpha_n x0 + sigma_n z`` with the same ``z`` (the one-sample estimate of the
ODE step, Song et al. 2023, Theorem 2).

Objectives follow the Trainer contract ``objective(model, batch, generator) -> (loss, logs)``; ``model``
is the raw network (saved with ``save_pretrained``). Pass :class:`ConsistencyCallback` to the Trainer so
the objective knows the step (iCT curriculum) and the EMA target follows the model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from diffcore.distill.discretization import (
    ict_num_points,
    karras_sigmas,
    lognormal_interval_probs,
    time_of_data_sigma,
)
from diffcore.distill.parameterization import ConsistencyParameterization
from diffcore.distill.teacher import Solver, bind, check_solver, noised, ode_step
from diffcore.paths.denoiser import DenoiserBase
from diffcore.training.callbacks import Callback
from diffcore.training.objectives import split_batch

Distance = Literal["l2", "l1", "pseudo-huber"]
Weighting = Literal["uniform", "ict"]


def consistency_distance(a: Tensor, b: Tensor, kind: Distance = "l2", c: float | None = None) -> Tensor:
    """Per-sample distance ``(B,)`` between ``a`` and ``b`` ``(B, ...)``.

    ``l2``: mean squared error; ``l1``: mean absolute error; ``pseudo-huber``: ``sqrt(||a - b||^2 + c^2) - c``
    (Song & Dhariwal 2023, Sec. 3.3) with ``c = 0.00054 sqrt(d)`` by default (``d`` = dimensions per sample).
    """
    diff = (a - b).reshape(a.shape[0], -1)
    if kind == "l2":
        return (diff**2).mean(1)
    if kind == "l1":
        return diff.abs().mean(1)
    if kind == "pseudo-huber":
        c = 0.00054 * math.sqrt(diff.shape[1]) if c is None else c
        return torch.sqrt((diff**2).sum(1) + c * c) - c
    raise ValueError(f"distance: expected 'l2', 'l1' or 'pseudo-huber', got {kind!r}")


class TargetNetwork:
    """The target ``theta-`` of a consistency objective: ``stopgrad(theta)`` when ``decay = 0``, else an EMA
    copy ``theta- <- decay theta- + (1 - decay) theta`` (Song et al. 2023, Algorithm 2), made on first use."""

    def __init__(self, decay: float = 0.0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"target_ema: expected a decay in [0, 1), got {decay}")
        self.decay = decay
        self._copy: nn.Module | None = None

    def module(self, model: nn.Module) -> nn.Module:
        """The network to evaluate the target with (always under ``torch.no_grad``)."""
        if self.decay == 0.0:
            return model
        if self._copy is None:
            self._copy = copy.deepcopy(model).requires_grad_(False)
        return self._copy

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average ``model``'s current weights into the EMA copy (no-op when ``decay = 0``)."""
        if self.decay == 0.0 or self._copy is None:
            return
        for p_t, p in zip(self._copy.parameters(), model.parameters(), strict=True):
            p_t.lerp_(p.detach(), 1.0 - self.decay)


@dataclass
class _ConsistencyObjective:
    """Shared parts: the parameterisation, the distance, the weighting and the target network."""

    parameterization: ConsistencyParameterization
    distance: Distance = "l2"
    huber_c: float | None = None
    weighting: Weighting = "uniform"
    target_ema: float = 0.0
    s_max: float = 80.0
    rho: float = 7.0
    step: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        consistency_distance(torch.zeros(1, 1), torch.zeros(1, 1), self.distance, self.huber_c)
        if self.weighting not in ("uniform", "ict"):
            raise ValueError(f"weighting: expected 'uniform' or 'ict', got {self.weighting!r}")
        if not self.s_max > self.parameterization._s_min:
            raise ValueError(
                f"s_max: expected > s_min = {self.parameterization._s_min:.4g}, got {self.s_max}"
            )
        self.target = TargetNetwork(self.target_ema)
        self._times: dict[int, Tensor] = {}  # discretisation times by number of points (bisection is slow)

    def times(self, sigmas: Tensor) -> Tensor:
        """The times of the data-unit noise levels ``sigmas`` (cached per length), ``t_min`` exactly first."""
        key = len(sigmas)
        if key not in self._times:
            times = time_of_data_sigma(self.parameterization.schedule, sigmas)
            times[0] = self.parameterization.t_min  # exact boundary, not a bisection result
            self._times[key] = times
        return self._times[key]

    @property
    def t_max(self) -> float:
        """The largest time of the discretisation (data-unit noise ``s_max``): start sampling there."""
        return float(time_of_data_sigma(self.parameterization.schedule, self.s_max))

    def sampling_grid(self, steps: int) -> Tensor:
        """The decreasing times ``(steps + 1,)`` for multistep sampling on the training discretisation (LCM's
        inference timesteps, Luo et al. 2023, Sec. 4.3 and its scheduler): points ``N - 1 - round(i (N - 1) /
        steps)`` of the ``N`` points (``i < steps``, so ``t_max`` first), then ``t = 0``. The student is evaluated
        only at times it was trained at; the 1-, 2- and 4-step grids are nested when ``N - 1`` is a multiple of 4.
        Pass it as ``diffcore.sample(..., "lcm", steps, grid=objective.sampling_grid(steps))``."""
        points = self.num_points
        if not 1 <= steps < points:
            raise ValueError(f"steps: expected 1 <= steps < num_points ({points}), got {steps}")
        times = self.times(self.sigmas(points))
        index = [points - 1 - round(i * (points - 1) / steps) for i in range(steps)]
        return torch.cat([times[index], torch.zeros(1, dtype=torch.float64)])

    def sigmas(self, num_points: int) -> Tensor:
        """Increasing data-unit noise levels of the discretisation, from that at ``t_min`` to ``s_max``."""
        return karras_sigmas(num_points, self.parameterization._s_min, self.s_max, self.rho)

    def _draw_intervals(
        self,
        sigmas: Tensor,
        probs: Tensor | None,
        b: int,
        device: torch.device,
        generator: torch.Generator | None,
        skip: int = 1,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample ``(t_lo, t_hi, weight)`` for pairs ``(n, n + skip)`` drawn uniformly or from ``probs``."""
        n = len(sigmas) - skip
        if probs is None:
            idx = torch.randint(0, n, (b,), device=device, generator=generator)
        else:
            idx = torch.multinomial(probs.to(device), b, replacement=True, generator=generator)
        times = self.times(sigmas).to(device)
        if self.weighting == "ict":  # lambda = 1 / (s_{n+1} - s_n), normalised to mean 1 over the intervals
            lam = 1.0 / (sigmas[skip:] - sigmas[:-skip])
            weight = (lam / lam.mean()).to(device)[idx]
        else:
            weight = torch.ones(b, device=device, dtype=torch.float64)
        return times[idx], times[idx + skip], weight

    def _loss(
        self,
        model: nn.Module,
        x_hi: Tensor,
        t_hi: Tensor,
        x_lo: Tensor,
        t_lo: Tensor,
        weight: Tensor,
        cond: dict[str, Any],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        f = self.parameterization
        pred = f(model, x_hi, t_hi.float(), **cond)
        with torch.no_grad():
            target = f(self.target.module(model), x_lo, t_lo.float(), **cond)
        d = consistency_distance(pred, target.to(pred.dtype), self.distance, self.huber_c)
        loss = (weight.to(d.dtype) * d).mean()
        return loss, {"distance": d.mean().detach()}


@dataclass
class ConsistencyDistillation(_ConsistencyObjective):
    """Consistency distillation (Song et al. 2023, Algorithm 2) from a frozen teacher.

    Args:
        teacher: the frozen teacher (any :class:`~diffcore.paths.denoiser.DenoiserBase`; its schedule must be the
            parameterisation's).
        parameterization: the student's boundary-conditioned consistency function.
        num_points: points ``N`` of the fixed discretisation (18 in the paper's CIFAR-10 runs).
        solver: the teacher's one-step ODE solver (``ddim``, ``euler`` or ``heun``).
        distance, huber_c, weighting, target_ema, s_max, rho: see :class:`_ConsistencyObjective`;
            ``target_ema`` is the paper's ``mu`` (0.95 there; 0 is ``stopgrad(theta)``).
    """

    teacher: DenoiserBase | None = None
    num_points: int = 18
    solver: Solver = "heun"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher is None:
            raise ValueError("teacher: consistency distillation needs a teacher denoiser")
        check_solver(self.solver)
        if self.num_points < 2:
            raise ValueError(f"num_points: expected >= 2, got {self.num_points}")

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        t_lo, t_hi, weight = self._draw_intervals(
            self.sigmas(self.num_points), None, x0.shape[0], x0.device, generator
        )
        z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        schedule = self.parameterization.schedule
        x_hi = noised(schedule, x0, z, t_hi)
        x_lo = ode_step(bind(self.teacher, cond), schedule, x_hi, t_hi, t_lo, self.solver)
        return self._loss(model, x_hi, t_hi, x_lo, t_lo, weight, cond)


@dataclass
class ConsistencyTraining(_ConsistencyObjective):
    """Consistency training from data alone with the improved-CT recipe (Song & Dhariwal 2023):
    pseudo-Huber distance, ``lambda = 1 / (s_{n+1} - s_n)``, lognormal interval proposal, the doubling
    curriculum on the number of discretisation points and ``stopgrad(theta)`` as target (``target_ema=0``).

    Args:
        total_steps: training steps ``K`` of the curriculum (:func:`ict_num_points`). ``None`` (the default)
            takes the Trainer run's ``config.steps`` through :class:`ConsistencyCallback`, so the doubling
            stages always span the real run; an explicit value must equal it.
        s0, s1: initial and final numbers of intervals (10 and 1280 in the paper, over 400k steps).
        p_mean, p_std: the lognormal proposal (-1.1 and 2.0).

    The distance defaults to the paper's pseudo-Huber, which is right for images but biased for
    low-dimensional data: with ``c = 0.00054 sqrt(d)`` far below the size of the one-sample differences, the
    loss is the unsquared norm ``||f_hi - f_lo||``, whose minimiser over the random ``x0`` behind ``x_hi`` is a
    (geometric) median of the targets, not the mean that the probability-flow ODE follows (Song et al.
    2023, Theorem 2 needs a distance that is locally quadratic at the scale of those differences). In high
    dimension the norm concentrates and the bias vanishes; for 2-D or tabular data use ``distance="l2"``.
    """

    distance: Distance = "pseudo-huber"
    weighting: Weighting = "ict"
    total_steps: int | None = None
    s0: int = 10
    s1: int = 1280
    p_mean: float = -1.1
    p_std: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        ict_num_points(0, self.total_steps or 1, self.s0, self.s1)  # validates

    @property
    def num_points(self) -> int:
        """Points of the discretisation at the current step."""
        if self.total_steps is None:
            raise ValueError(
                "total_steps: not set; pass total_steps= or train with ConsistencyCallback, which takes it "
                "from the Trainer's config.steps"
            )
        return ict_num_points(min(self.step, self.total_steps), self.total_steps, self.s0, self.s1)

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        sigmas = self.sigmas(self.num_points)
        probs = lognormal_interval_probs(sigmas, self.p_mean, self.p_std)
        t_lo, t_hi, weight = self._draw_intervals(sigmas, probs, x0.shape[0], x0.device, generator)
        z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        schedule = self.parameterization.schedule
        x_hi, x_lo = noised(schedule, x0, z, t_hi), noised(schedule, x0, z, t_lo)
        loss, logs = self._loss(model, x_hi, t_hi, x_lo, t_lo, weight, cond)
        logs["num_points"] = torch.tensor(float(len(sigmas)))
        return loss, logs


class ConsistencyCallback(Callback):
    """Keeps a consistency objective in step with the Trainer: sets ``objective.step`` (the iCT curriculum,
    also after a resume), gives a curriculum objective (:class:`ConsistencyTraining`, ECT's
    :class:`~diffcore.distill.ect.EasyConsistencyTraining`) the run's total step count when its ``total_steps`` is
    ``None``, and updates the EMA target after every optimizer step.

    Under a wall-time budget (``TrainConfig.max_seconds``) the run may end before ``config.steps``; the
    curriculum then advances by whichever is further, the step count or the fraction of the budget spent,
    so its last stage is reached by the end of the run either way."""

    def __init__(self, objective: _ConsistencyObjective) -> None:
        self.objective = objective
        self._start = 0.0
        self._budget: float | None = None

    def on_train_start(self, trainer) -> None:
        self._start = time.perf_counter()
        self._budget = getattr(trainer.config, "max_seconds", None)
        self.objective.step = trainer.step
        if hasattr(self.objective, "total_steps"):  # a curriculum (iCT, ECT) spans the Trainer run
            steps = int(trainer.config.steps)
            if self.objective.total_steps is None:
                self.objective.total_steps = steps
            elif self.objective.total_steps != steps:
                raise ValueError(
                    f"total_steps: the curriculum spans {self.objective.total_steps} steps but the Trainer "
                    f"runs {steps}; pass total_steps=None to follow the Trainer"
                )

    def on_step_end(self, trainer, step: int) -> None:
        total = getattr(self.objective, "total_steps", None)
        if self._budget is not None and total is not None:
            spent = (time.perf_counter() - self._start) / self._budget
            step = max(step, min(int(spent * total), total))
        self.objective.step = step
        self.objective.target.update(trainer.unwrapped_model)
