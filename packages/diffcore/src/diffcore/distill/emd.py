"""EM distillation (EMD, Xie et al. 2024, "EM Distillation for One-step Diffusion Models").

A one-step generator ``x = g(z)`` defines a latent-variable model; noised to time ``t`` it is
``x_t = alpha g(z) + sigma eps``. EMD maximises the likelihood of the teacher's distribution under this model
by expectation-maximisation:

- **E-step** (reparametrised sampling, Sec. 3.2): Langevin dynamics on ``(eps, z)`` jointly, started at the
  generator's own draw, targeting ``p_teacher,t(x_t) p(z | x_t)``; in ``(eps, z)`` coordinates its log density
  is ``log p_teacher,t(x_t) - log p_g,t(x_t) - |eps|^2 / 2 - |z|^2 / 2`` (the Jacobian of
  ``(eps, z) -> (x_t, z)`` is constant), so with ``d = s_teacher(x_t) - s_fake(x_t)`` (the fake score
  estimating ``grad log p_g,t``, as in DMD)

      eps <- eps + gamma_eps (sigma d - eps) + sqrt(2 gamma_eps) n,
      z   <- z   + gamma_z (alpha J_g(z)^T d - z) + sqrt(2 gamma_z) n';

- **M-step**: raise ``log p(x_t* | z*) = -|x_t* - alpha g(z*)|^2 / (2 sigma^2)`` at the E-step's samples;
  its residual is ``sigma eps*``. **Noise cancellation** (Sec. 3.3): ``eps*`` is split, exactly (the update is
  linear in ``eps``), into the propagated initial noise and Langevin noise, ``eps_noise <- (1 - gamma) eps_noise +
  sqrt(2 gamma) n``, and the drift ``eps_drift <- (1 - gamma) eps_drift + gamma sigma d``; only the drift is
  kept, so the generator moves by ``(sigma / alpha) eps_drift`` in data units.

With one E-step (``langevin_steps = 1``, ``gamma_z = 0``) the drift is ``gamma alpha (mu_teacher - mu_fake) /
sigma`` and the update is DMD's distribution-matching direction (Sec. 3.4, the link to mode-seeking KL);
the M-step target divides the drift by ``K gamma_eps`` and uses DMD's normaliser ``mean|x - mu_teacher|``, so
that case is exactly :class:`~diffcore.distill.dmd.DistributionMatchingDistillation`'s gradient. The
fake score learns the generator's outputs (denoising loss on ``stopgrad(g(z))``), in the same scalar loss.
The model is a :class:`~diffcore.distill.dmd.DMDModel`; train it with
:func:`~diffcore.distill.dmd.dmd_optimizer`. Batches: a tensor or ``{"x": ..., **cond}`` (``x`` gives only the
shape: EMD needs no data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from diffcore.distill.dmd import DMDModel, fake_score_loss, uniform_times
from diffcore.distill.teacher import coefficients
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.predictions import Prediction, check_prediction, to_x0_eps
from diffcore.training.objectives import split_batch


@dataclass
class EStep:
    """The E-step's result: ``z``, ``eps`` (the chain's end, ``(B, ...)``) and ``eps_drift`` (``eps`` less the
    propagated initial and Langevin noise)."""

    z: Tensor
    eps: Tensor
    eps_drift: Tensor


@dataclass
class EMDistillation:
    """The EMD objective for a :class:`~diffcore.distill.dmd.DMDModel` (generator + fake score).

    Args:
        teacher: the frozen teacher denoiser; its schedule is the path.
        generator_prediction, fake_prediction: what the two networks output.
        langevin_steps: E-step length ``K`` (0: no correction, the M-step then only trains the fake score).
        gamma_eps, gamma_z: Langevin step sizes on ``eps`` and on ``z`` (0 keeps ``z`` fixed).
        t_range: range of the uniform ``t`` of the E/M-step and of the fake score's loss.
        noise_cancellation: keep only the drift of ``eps`` in the M-step (Sec. 3.3); off, the whole residual.
    """

    teacher: DenoiserBase
    generator_prediction: Prediction = "x0"
    fake_prediction: Prediction = "x0"
    langevin_steps: int = 4
    gamma_eps: float = 0.2
    gamma_z: float = 0.0
    t_range: tuple[float, float] = (0.02, 0.98)
    noise_cancellation: bool = True

    def __post_init__(self) -> None:
        check_prediction(self.generator_prediction)
        check_prediction(self.fake_prediction)
        if self.langevin_steps < 0:
            raise ValueError(f"langevin_steps: expected an integer >= 0, got {self.langevin_steps}")
        if not 0 < self.gamma_eps <= 1:
            raise ValueError(f"gamma_eps: expected a step size in (0, 1], got {self.gamma_eps}")
        if not 0 <= self.gamma_z <= 1:
            raise ValueError(f"gamma_z: expected a step size in [0, 1], got {self.gamma_z}")
        lo, hi = self.t_range
        if not 0.0 < lo < hi < 1.0:
            raise ValueError(f"t_range: expected 0 < lo < hi < 1, got {self.t_range}")

    @property
    def schedule(self):
        """The teacher's schedule (the path every step uses)."""
        return self.teacher.schedule

    def generate(self, generator: nn.Module, z: Tensor, **cond: Any) -> Tensor:
        """``g(z)``: the generator at ``t = 1`` on ``x_1 = sigma(1) z``, read as ``x0``; ``z: (B, ...)``."""
        t = torch.ones(z.shape[0], device=z.device, dtype=torch.float64)
        c = coefficients(self.schedule, t, z)
        x1 = c.sigma * z
        out = generator(x1, t.to(z.dtype) if z.dtype == torch.float64 else t.float(), **cond)
        return to_x0_eps(out, self.generator_prediction, x1, c)[0]

    def generator_denoiser(self, generator: nn.Module) -> Denoiser:
        """The generator as a denoiser: ``diffcore.sample(den, z, "consistency", 1)`` returns ``g(z)``."""
        return Denoiser(generator, self.schedule, self.generator_prediction)

    def score_gap(
        self, model: DMDModel, x_t: Tensor, t: Tensor, cond: dict[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """``(d, mu_teacher)``: ``d = s_teacher(x_t) - s_fake(x_t) = alpha (mu_teacher - mu_fake) / sigma^2``
        from the two data estimates, without gradients; ``t: (B,)``."""
        c = coefficients(self.schedule, t, x_t)
        with torch.no_grad():
            real = self.teacher.x0(x_t, t, **cond).to(x_t.dtype)
            fake_out = model.fake_score(x_t, t.to(x_t.dtype), **cond)
            fake = to_x0_eps(fake_out, self.fake_prediction, x_t, c)[0]
        return c.alpha * (real - fake) / c.sigma**2, real

    def e_step(
        self,
        model: DMDModel,
        z: Tensor,
        eps: Tensor,
        t: Tensor,
        cond: dict[str, Any],
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> EStep:
        """``steps`` (default ``langevin_steps``) Langevin updates of ``(eps, z)`` at times ``t: (B,)``."""
        c = coefficients(self.schedule, t, eps)
        drift = torch.zeros_like(eps)
        ge, gz = self.gamma_eps, self.gamma_z
        for _ in range(self.langevin_steps if steps is None else steps):
            if gz > 0:
                with torch.enable_grad():
                    zg = z.detach().requires_grad_(True)
                    gen = self.generate(model.generator, zg, **cond)
                    x_t = c.alpha * gen.detach() + c.sigma * eps
                    d, _ = self.score_gap(model, x_t, t, cond)
                    (pull,) = torch.autograd.grad(gen, zg, grad_outputs=c.alpha * d)
            else:
                with torch.no_grad():
                    x_t = c.alpha * self.generate(model.generator, z, **cond) + c.sigma * eps
                d, _ = self.score_gap(model, x_t, t, cond)
            n = torch.randn(eps.shape, device=eps.device, dtype=eps.dtype, generator=generator)
            eps = eps + ge * (c.sigma * d - eps) + math.sqrt(2 * ge) * n
            drift = (1 - ge) * drift + ge * c.sigma * d
            if gz > 0:
                nz = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
                z = (z + gz * (pull - z) + math.sqrt(2 * gz) * nz).detach()
        return EStep(z.detach(), eps.detach(), drift.detach())

    def m_step_move(
        self, model: DMDModel, x: Tensor, eps0: Tensor, state: EStep, t: Tensor, cond: dict[str, Any]
    ) -> Tensor:
        """The M-step's displacement of ``x = g(z*)`` in data units: ``(sigma / alpha) eps_drift`` (or the whole
        ``eps*`` without noise cancellation) over ``K gamma_eps`` and DMD's normaliser ``mean|x - mu_teacher|``
        at the chain's start ``alpha x + sigma eps0``."""
        c = coefficients(self.schedule, t, x)
        residual = state.eps_drift if self.noise_cancellation else state.eps
        with torch.no_grad():
            _, real = self.score_gap(model, c.alpha * x + c.sigma * eps0, t, cond)
            norm = (x - real).abs().mean(tuple(range(1, x.ndim)), keepdim=True).clamp_min(1e-6)
            return (c.sigma / c.alpha) * residual / (max(self.langevin_steps, 1) * self.gamma_eps) / norm

    def _fake_loss(self, model: DMDModel, x: Tensor, cond: dict[str, Any], generator) -> Tensor:
        t = self._times(x.shape[0], x.device, generator)
        return fake_score_loss(model.fake_score, x, t, self.schedule, self.fake_prediction, cond, generator)

    def _times(self, b: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return uniform_times(self.t_range, b, device, generator)

    def __call__(
        self, model: DMDModel, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(model, DMDModel):
            raise TypeError(
                f"model: expected a DMDModel (generator + fake_score), got {type(model).__name__}"
            )
        like, cond = split_batch(batch)
        cond = {k: v for k, v in cond.items() if k != "noise"}
        b = like.shape[0]
        z = torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
        eps = torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
        t = self._times(b, like.device, generator)
        fake = self._fake_loss(model, self.generate(model.generator, z, **cond).detach(), cond, generator)
        logs: dict[str, Tensor] = {"fake_score": fake.detach()}
        if self.langevin_steps == 0:
            return fake, logs
        state = self.e_step(model, z, eps, t, cond, generator=generator)
        x = self.generate(model.generator, state.z, **cond)
        move = self.m_step_move(model, x.detach(), eps, state, t, cond)
        m_step = 0.5 * ((x - (x + move).detach()) ** 2).reshape(b, -1).sum(1).mean()
        logs.update(m_step=m_step.detach(), move=move.abs().mean())
        return fake + m_step, logs
