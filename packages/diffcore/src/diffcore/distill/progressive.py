"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion
Models", Algorithm 2).

A student, initialised from the teacher, learns to match two deterministic DDIM steps of the teacher
with one step of its own: on the student grid ``t_i = i / N`` (``t = 0`` data), from ``z_t`` at
``t = i / N`` the teacher takes DDIM steps to ``t' = t - 1/(2N)`` and ``t'' = t - 1/N``; the student's
``x0`` estimate is regressed on the ``x0`` that makes one DDIM step land on the teacher's ``z_t''``:

    x_tilde = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

with the "truncated SNR" weight ``max(alpha_t^2 / sigma_t^2, 1)`` (Sec. 4 of the paper). Repeating the
procedure with the student as the new teacher halves the step count each round
(:func:`distill_progressively`). Sample a student of ``N`` steps with ``diffcore.sample(..., "ddim", N)``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from diffcore.distill.teacher import bind, coefficients, noised, ode_step
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.predictions import Prediction, check_prediction, to_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.training import TrainConfig, Trainer
from diffcore.training.objectives import split_batch


def two_step_target(
    teacher: DenoiserBase, z_t: Tensor, t: Tensor, step: float, cond: dict[str, Any]
) -> Tensor:
    """The ``x_tilde`` of Algorithm 2: the ``x0`` for which one DDIM step from ``(z_t, t)`` to ``t - step``
    lands where two teacher DDIM steps of ``step / 2`` land. ``z_t: (B, ...)``, ``t: (B,)``."""
    schedule = teacher.schedule
    fn = bind(teacher, cond)
    t_mid, t_end = (t - 0.5 * step).clamp_min(0.0), (t - step).clamp_min(0.0)
    z_mid = ode_step(fn, schedule, z_t, t, t_mid, "ddim")
    z_end = ode_step(fn, schedule, z_mid, t_mid, t_end, "ddim")
    ct, ce = coefficients(schedule, t, z_t), coefficients(schedule, t_end, z_t)
    ratio = ce.sigma / ct.sigma
    return (z_end - ratio * z_t) / (ce.alpha - ratio * ct.alpha)


@dataclass
class ProgressiveDistillation:
    """One round of progressive distillation: the student learns ``student_steps`` DDIM steps from a teacher
    sampled with ``2 * student_steps``.

    Args:
        teacher: the frozen teacher denoiser (its schedule is used).
        prediction: what the student network outputs (``v`` as in the paper; any kind works where it
            determines ``x0``).
        student_steps: ``N``, the student's number of steps (uniform grid ``t_i = i / N``).
    """

    teacher: DenoiserBase
    prediction: Prediction = "v"
    student_steps: int = 4

    def __post_init__(self) -> None:
        check_prediction(self.prediction)
        if not isinstance(self.student_steps, int) or self.student_steps < 1:
            raise ValueError(f"student_steps: expected an integer >= 1, got {self.student_steps!r}")

    @property
    def schedule(self) -> Schedule:
        return self.teacher.schedule

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        b, n = x0.shape[0], self.student_steps
        i = torch.randint(1, n + 1, (b,), device=x0.device, generator=generator)
        t = i.to(torch.float64) / n
        z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        z_t = noised(self.schedule, x0, z, t)
        target = two_step_target(self.teacher, z_t, t, 1.0 / n, cond)
        out = model(z_t, t.to(x0.dtype) if x0.dtype == torch.float64 else t.float(), **cond)
        c = coefficients(self.schedule, t, out)
        x0_hat, _ = to_x0_eps(out, self.prediction, z_t.to(out.dtype), c)
        per_sample = ((x0_hat - target.to(out.dtype)) ** 2).reshape(b, -1).mean(1)
        snr = (c.alpha**2 / c.sigma**2).reshape(b)
        weight = torch.clamp(snr, min=1.0)  # truncated SNR weighting
        return (weight * per_sample).mean(), {"x0_mse": per_sample.mean().detach()}


@dataclass
class ProgressiveRound:
    """What one round produced: the student's step count and where the Trainer saved it."""

    student_steps: int
    model_dir: Path
    final_loss: float


def distill_progressively(
    student: nn.Module,
    teacher: DenoiserBase,
    loader: DataLoader,
    config: TrainConfig,
    *,
    teacher_steps: int,
    rounds: int,
    prediction: Prediction = "v",
) -> list[ProgressiveRound]:
    """Run ``rounds`` rounds of progressive distillation, halving the step count each round.

    Round ``k`` trains ``student`` (in place, ``config.steps`` steps, output under
    ``config.output_dir/round-k``) to take ``teacher_steps / 2^k`` steps; the student of each round becomes
    the (frozen copy) teacher of the next. ``teacher_steps`` must be divisible by ``2^rounds``.
    """
    if rounds < 1 or teacher_steps % (2**rounds):
        raise ValueError(
            f"teacher_steps, rounds: expected rounds >= 1 and teacher_steps divisible by 2^rounds, "
            f"got {teacher_steps}, {rounds}"
        )
    schedule = get_schedule(teacher.schedule) if isinstance(teacher.schedule, str) else teacher.schedule
    results, steps = [], teacher_steps
    for k in range(1, rounds + 1):
        steps //= 2
        objective = ProgressiveDistillation(teacher, prediction, steps)
        round_config = dataclasses.replace(config, output_dir=str(Path(config.output_dir) / f"round-{k}"))
        summary = Trainer(student, objective, loader, round_config).fit()
        results.append(ProgressiveRound(steps, summary.model_dir, summary.final_loss))
        frozen = copy.deepcopy(student).eval().requires_grad_(False)
        teacher = Denoiser(frozen, schedule, prediction)
    return results
