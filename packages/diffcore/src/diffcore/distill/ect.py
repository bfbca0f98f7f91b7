"""Easy consistency tuning / training (ECT, Geng et al. 2024, "Consistency Models Made Easy"): consistency
training in continuous time.

iCT (:class:`~diffcore.distill.consistency.ConsistencyTraining`) pairs adjacent points of a discretisation
whose number of points doubles over training. ECT draws the larger time ``t`` continuously and the smaller one
``r`` by a mapping that starts at ``r = 0`` (then the loss *is* diffusion training: ``f(x_t, t)`` regressed on
the data) and shrinks the gap ``t - r`` by a factor ``q`` at every stage. In data-unit noise ``s = sigma/alpha``
(EDM's ``t``), with the same noise ``z`` at both times (``x_s = x0 + s z`` in data units):

    ln s ~ N(P_mean, P_std^2)                        (lognormal, P_mean = -1.1, P_std = 2.0)
    s_r / s = 1 - n(s) / q^a,  n(s) = 1 + k sigmoid(-b s)     (ECT, Eq. 9: q = 2, k = 8, b = 1)
    loss = w(s, s_r) d(f_theta(x_s, s), stopgrad f_theta(x_{s_r}, s_r)),  w = 1 / (s - s_r)  (ECT, Eq. 8)

``a`` is the stage: 0 during the diffusion-pretraining part of the run (``pretrain_fraction``; ``n >= 1``
makes ``s_r <= 0``, clipped to the boundary where ``f`` is the identity, so the target is ``x0``), then
``1 .. stages`` in equal parts of the rest. Trained from a random initialisation this is consistency training
from data alone whose first phase is diffusion training; with ``pretrain_fraction = 0`` and a diffusion
model's weights it is ECT's tuning. The target is ``stopgrad(theta)`` (no EMA), as in iCT and ECT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from diffcore.distill.consistency import _ConsistencyObjective, consistency_distance
from diffcore.distill.discretization import time_of_data_sigma
from diffcore.distill.teacher import noised
from diffcore.training.objectives import split_batch


def ect_gap_ratio(s: Tensor, stage: int, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> Tensor:
    """``s_r / s = 1 - n(s) / q^stage`` with ``n(s) = 1 + k sigmoid(-b s)`` (ECT, Eq. 9), clipped at 0.

    ``s``: data-unit noise levels (any shape); ``stage`` >= 0. Stage 0 gives 0 everywhere (``n >= 1``)."""
    if stage < 0:
        raise ValueError(f"stage: expected an integer >= 0, got {stage}")
    if not q > 1:
        raise ValueError(f"q: expected > 1, got {q}")
    n = 1.0 + k * torch.sigmoid(-b * s)
    return (1.0 - n / q**stage).clamp_min(0.0)


def ect_stage(step: int, total_steps: int, stages: int, pretrain_fraction: float) -> int:
    """The stage ``a`` at training ``step`` of ``total_steps``: 0 during the first ``pretrain_fraction`` of the
    run, then ``1 .. stages`` in equal parts of the rest (the last one held to the end)."""
    if total_steps < 1 or step < 0:
        raise ValueError(
            f"step, total_steps: expected 0 <= step and total_steps >= 1, got {step}, {total_steps}"
        )
    pre = int(pretrain_fraction * total_steps)
    if step < pre:
        return 0
    per = max((total_steps - pre) / stages, 1e-9)
    return min(int((step - pre) // per) + 1, stages)


@dataclass
class EasyConsistencyTraining(_ConsistencyObjective):
    """Continuous-time consistency training (ECT, Geng et al. 2024) for the Trainer; pass
    :class:`~diffcore.distill.consistency.ConsistencyCallback` so the stage follows the run.

    Args:
        parameterization: the boundary-conditioned consistency function (any prediction kind).
        distance: ``"l2"`` (mean squared error, the default here: at low dimension pseudo-Huber's ``c`` makes it a
            median estimator, see :class:`~diffcore.distill.consistency.ConsistencyTraining`) or
            ``"pseudo-huber"`` (``c = 0.00054 sqrt(d)``).
        total_steps: the run's steps (``None``: the Trainer's ``config.steps`` through the callback).
        stages: number of gap-halving stages after the pretraining part (ECT's ``iters / d``).
        pretrain_fraction: share of the run at stage 0 (``r = 0``: diffusion training); 0 for tuning a
            pretrained diffusion model. The defaults (3 stages after half the run) are those that did best in
            short CPU runs on the 2-D mixture (1,000 steps; 6 stages after 30% got worse with more sampling steps).
        q, k, b: the mapping's constants (ECT: 2, 8, 1).
        p_mean, p_std: the lognormal over ``s`` (-1.1, 2.0); draws are clipped to ``[s_min, s_max]``.
    """

    distance: str = "l2"
    total_steps: int | None = None
    stages: int = 3
    pretrain_fraction: float = 0.5
    q: float = 2.0
    k: float = 8.0
    b: float = 1.0
    p_mean: float = -1.1
    p_std: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stages < 1:
            raise ValueError(f"stages: expected an integer >= 1, got {self.stages}")
        if not 0.0 <= self.pretrain_fraction < 1.0:
            raise ValueError(
                f"pretrain_fraction: expected a fraction in [0, 1), got {self.pretrain_fraction}"
            )
        if not self.p_std > 0:
            raise ValueError(f"p_std: expected > 0, got {self.p_std}")
        ect_gap_ratio(torch.ones(1), 0, self.q, self.k, self.b)  # validates q

    @property
    def stage(self) -> int:
        """The mapping's stage ``a`` at the current step (0: diffusion pretraining)."""
        if self.total_steps is None:
            raise ValueError(
                "total_steps: not set; pass total_steps= or train with ConsistencyCallback, which takes it "
                "from the Trainer's config.steps"
            )
        return ect_stage(
            min(self.step, self.total_steps), self.total_steps, self.stages, self.pretrain_fraction
        )

    def draw(
        self, b: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(s, s_r)``, each ``(B,)`` float64 data-unit noise levels of the current stage; ``s_r = 0`` where
        the gap reaches the boundary (the target is then the data itself)."""
        s_min = self.parameterization._s_min
        log_s = self.p_mean + self.p_std * torch.randn(
            b, generator=generator, device=device, dtype=torch.float64
        )
        s = log_s.exp().clamp(s_min, self.s_max)
        s_r = s * ect_gap_ratio(s, self.stage, self.q, self.k, self.b)
        return s, torch.where(s_r > s_min, s_r, torch.zeros_like(s_r))

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        s, s_r = self.draw(x0.shape[0], x0.device, generator)
        schedule = self.parameterization.schedule
        t = time_of_data_sigma(schedule, s)
        boundary = s_r == 0
        t_r = time_of_data_sigma(schedule, torch.where(boundary, s, s_r))  # placeholder where boundary
        z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        f = self.parameterization
        pred = f(model, noised(schedule, x0, z, t), t.float(), **cond)
        with torch.no_grad():
            target = f(self.target.module(model), noised(schedule, x0, z, t_r), t_r.float(), **cond)
            mask = boundary.reshape((-1,) + (1,) * (x0.ndim - 1))
            target = torch.where(mask, x0.to(target.dtype), target)  # f(x, 0) = x0 at the boundary
        d = consistency_distance(pred, target.to(pred.dtype), self.distance, self.huber_c)  # type: ignore[arg-type]
        weight = 1.0 / (s - s_r)  # ECT Eq. 8
        loss = (weight.to(d.dtype) * d).mean()
        return loss, {
            "distance": d.mean().detach(),
            "stage": torch.tensor(float(self.stage)),
            "boundary_fraction": boundary.float().mean(),
        }
