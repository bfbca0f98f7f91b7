"""Latent consistency models (Luo et al. 2023, "Latent Consistency Models", Algorithm 1) and LCM-LoRA
(Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration Module").

LCM is consistency distillation of a *guided* teacher: for a guidance scale ``w ~ U[w_min, w_max]`` the
teacher's ODE step uses classifier-free guidance at scale ``w`` (``x0 = x0_u + w (x0_c - x0_u)``), and the
student takes ``w`` as an extra input (``cond[guidance_key]``, a ``(B,)`` tensor), so one student serves
every scale without a second forward ("guidance-scale conditioning", Sec. 4.2). ``skip`` pairs points
``k`` apart on the discretisation (the skipping-step technique, Sec. 4.3). The objective works in any
space (pixels, latents, 2-D toys): the latent part is the caller's autoencoder.

LCM-LoRA trains the same objective only in a LoRA adapter of the teacher's own network
(:func:`add_lcm_lora`); the adapter, saved with :func:`diffcore.nn.lora.save_lora`, turns the base model
into a few-step generator (``guidance_key=None`` when the base takes no guidance-scale input: the scale
is then fixed or drawn from the range); LCM-LoRA starts as the teacher's denoiser with LCM's boundary scalings
(``ConsistencyParameterization(..., timestep_scaling=10)``). Sample with ``diffcore.sample(..., sampler="lcm",
steps=1..4, grid=objective.sampling_grid(steps))``, on the times trained at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from diffcore.distill.consistency import _ConsistencyObjective
from diffcore.distill.teacher import Solver, check_solver, guided, noised, ode_step
from diffcore.paths.denoiser import DenoiserBase
from diffcore.training.objectives import split_batch


@dataclass
class LatentConsistencyDistillation(_ConsistencyObjective):
    """LCM's guided consistency distillation.

    Args:
        teacher: the frozen conditional teacher denoiser.
        uncond: the unconditional conditioning for the guidance branch (e.g. ``{"y": null_labels}``, values of
            batch size 1 broadcast or of the batch's size); keys missing take the conditional value.
        guidance_range: ``(w_min, w_max)``; ``w`` is drawn uniformly per sample (``w = 1``: no guidance).
        guidance_key: the student's keyword for ``w`` (None: the student takes no ``w``, as LCM-LoRA).
        num_points: points of the discretisation (LCM: 50 DDIM steps of a 1000-step model, ``skip = 20``).
        skip: ``k``, the distance between the paired points.
        solver: the teacher's ODE solver (``ddim`` as in LCM).
        target_ema: the target network ``theta-`` is an EMA of the student with this decay (LCM, Algorithm 1, and
            its released code: 0.95; 0 is ``stopgrad(theta)``, iCT's choice for training from data). On the 2-D
            mixture the EMA target made the 1-step error about half and the 2- and 4-step errors no larger
            than the 1-step one, where ``stopgrad`` spread the trajectories' ends too far at moderate noise
            and more steps were worse (``benchmarks/few_step/few_step_gmm.py``, docs/few_step.md).
    """

    teacher: DenoiserBase | None = None
    uncond: dict[str, Any] = field(default_factory=dict)
    guidance_range: tuple[float, float] = (1.0, 4.0)
    guidance_key: str | None = "w"
    num_points: int = 50
    skip: int = 1
    solver: Solver = "ddim"
    target_ema: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher is None:
            raise ValueError("teacher: LCM distillation needs a teacher denoiser")
        check_solver(self.solver)
        lo, hi = self.guidance_range
        if not 0.0 <= lo <= hi:
            raise ValueError(f"guidance_range: expected 0 <= w_min <= w_max, got {self.guidance_range}")
        if not 1 <= self.skip < self.num_points:
            raise ValueError(f"skip: expected 1 <= skip < num_points ({self.num_points}), got {self.skip}")

    def _uncond(self, b: int, device: torch.device) -> dict[str, Tensor]:
        """``uncond`` with each value broadcast to the batch: a scalar or a leading size of 1 is expanded."""
        out = {}
        for k, v in self.uncond.items():
            v = torch.as_tensor(v, device=device)
            if v.ndim == 0:
                v = v.expand(b)
            elif v.shape[0] == 1:
                v = v.expand(b, *v.shape[1:])
            out[k] = v
        return out

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = split_batch(batch)
        b, device = x0.shape[0], x0.device
        sigmas = self.sigmas(self.num_points)
        t_lo, t_hi, weight = self._draw_intervals(sigmas, None, b, device, generator, skip=self.skip)
        lo, hi = self.guidance_range
        w = lo + (hi - lo) * torch.rand(b, device=device, generator=generator, dtype=torch.float64)
        z = torch.randn(x0.shape, device=device, dtype=x0.dtype, generator=generator)
        schedule = self.parameterization.schedule
        x_hi = noised(schedule, x0, z, t_hi)
        teacher_fn = guided(self.teacher, cond, self._uncond(b, device), w)
        x_lo = ode_step(teacher_fn, schedule, x_hi, t_hi, t_lo, self.solver)
        student_cond = {**cond, self.guidance_key: w.float()} if self.guidance_key else cond
        return self._loss(model, x_hi, t_hi, x_lo, t_lo, weight, student_cond)


def add_lcm_lora(
    model: nn.Module,
    rank: int = 16,
    alpha: float | None = None,
    target_modules: list[str] | str | None = None,
    adapter_name: str = "lcm",
) -> nn.Module:
    """Prepare ``model`` (the teacher's network, or a copy of it) for LCM-LoRA: inject a LoRA adapter
    ``adapter_name`` with ``B = 0`` (the model's output is unchanged) and freeze every other weight, so the
    consistency objective trains only the adapter. Returns ``model``."""
    from diffcore.nn.lora import add_lora

    return add_lora(model, rank=rank, alpha=alpha, target_modules=target_modules, adapter_name=adapter_name)
