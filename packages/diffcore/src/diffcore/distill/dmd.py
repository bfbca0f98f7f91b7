"""Distribution matching distillation (Yin et al. 2024, "One-step Diffusion with Distribution Matching
Distillation", Sec. 3; the two-time-scale update of DMD2, Yin et al. 2024b, Sec. 4.1).

A one-step generator ``G(z)`` (a network evaluated at ``t = 1`` whose output is read as ``x0``) is trained
with three terms, all in one scalar so one optimizer step updates both networks:

- distribution matching (Eq. 7-8): at a random ``t``, noise the generated ``x`` to ``x_t``; the KL gradient
  is ``(mu_fake(x_t) - mu_real(x_t)) / mean|x - mu_real(x_t)|`` where ``mu`` are the data estimates of the
  fake-score network and of the frozen teacher (the "real" score); it is applied to ``x`` through the
  surrogate ``0.5 ||x - stopgrad(x - grad)||^2``;
- regression (Eq. 9): ``||G(z_ref) - y_ref||^2`` on noise-data pairs of the teacher's ODE (LPIPS in the paper;
  make them with :func:`diffcore.distill.reflow.generate_couplings`);
- the fake-score denoising loss (Eq. 6) on ``stopgrad(x)``, so the fake network tracks the generator.

The fake score does not see the generator's gradient and the generator does not see the fake loss's
gradient (stop-gradients), so the sum trains each part on its own loss. Give the fake network a larger
learning rate with :func:`dmd_optimizer` (DMD2's two time-scale update). Batches are
``{"x": y_ref, "noise": z_ref, **cond}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from diffcore.distill.teacher import coefficients
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.predictions import Prediction, check_prediction, from_x0_eps, to_x0_eps


class DMDModel(nn.Module):
    """The trained pair: ``generator`` and ``fake_score`` (both networks ``net(x_t, t, **cond)``).

    Save the generator alone with ``model.generator.save_pretrained(...)``; sample it in one step with
    :meth:`DistributionMatchingDistillation.generator_denoiser` and the ``consistency`` sampler."""

    def __init__(self, generator: nn.Module, fake_score: nn.Module) -> None:
        super().__init__()
        self.generator, self.fake_score = generator, fake_score

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """The generator's output (for the Trainer's checks; the objective calls the parts by name)."""
        return self.generator(x, t, **cond)


def dmd_optimizer(model: DMDModel, lr: float, fake_lr_ratio: float = 5.0) -> torch.optim.Optimizer:
    """AdamW (betas 0, 0.99 as in DMD2) with the fake-score network at ``fake_lr_ratio`` times ``lr``."""
    if not fake_lr_ratio > 0:
        raise ValueError(f"fake_lr_ratio: expected > 0, got {fake_lr_ratio}")
    groups = [
        {"params": [p for p in model.generator.parameters() if p.requires_grad], "lr": lr},
        {"params": [p for p in model.fake_score.parameters() if p.requires_grad], "lr": lr * fake_lr_ratio},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.0, 0.99), weight_decay=0.0)


@dataclass
class DistributionMatchingDistillation:
    """The DMD objective for a :class:`DMDModel`.

    Args:
        teacher: the frozen teacher denoiser (the real score); its schedule is the path used.
        generator_prediction: what the generator outputs at ``t = 1`` (``x0``; any kind that determines x0).
        fake_prediction: what the fake-score network outputs.
        regression_weight: ``lambda_reg`` of the regression term (0.25 in DMD; 0 disables it).
        t_range: the range of ``t`` of the distribution-matching and fake losses (DMD: 0.02 to 0.98).
    """

    teacher: DenoiserBase
    generator_prediction: Prediction = "x0"
    fake_prediction: Prediction = "x0"
    regression_weight: float = 0.25
    t_range: tuple[float, float] = (0.02, 0.98)

    def __post_init__(self) -> None:
        check_prediction(self.generator_prediction)
        check_prediction(self.fake_prediction)
        lo, hi = self.t_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"t_range: expected 0 <= lo < hi <= 1, got {self.t_range}")
        if self.regression_weight < 0:
            raise ValueError(f"regression_weight: expected >= 0, got {self.regression_weight}")

    @property
    def schedule(self):
        return self.teacher.schedule

    def generate(self, generator: nn.Module, z: Tensor, **cond: Any) -> Tensor:
        """``x = G(z)``: the generator at ``t = 1`` on ``x_1 = sigma(1) z``, read as ``x0``. ``z: (B, ...)``."""
        t = torch.ones(z.shape[0], device=z.device, dtype=torch.float64)
        c = coefficients(self.schedule, t, z)
        x1 = c.sigma * z
        out = generator(x1, t.to(z.dtype) if z.dtype == torch.float64 else t.float(), **cond)
        return to_x0_eps(out, self.generator_prediction, x1, c)[0]

    def generator_denoiser(self, generator: nn.Module) -> Denoiser:
        """The generator as a denoiser: ``diffcore.sample(den, z, "consistency", 1)`` returns ``G(z)``."""
        return Denoiser(generator, self.schedule, self.generator_prediction)

    def _times(self, b: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        lo, hi = self.t_range
        return lo + (hi - lo) * torch.rand(b, device=device, generator=generator, dtype=torch.float64)

    def _matching_loss(
        self, model: DMDModel, x: Tensor, cond: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        t = self._times(b, x.device, generator)
        c = coefficients(self.schedule, t, x)
        x_t = c.alpha * x.detach() + c.sigma * torch.randn(
            x.shape, device=x.device, dtype=x.dtype, generator=generator
        )
        with torch.no_grad():
            real = self.teacher.x0(x_t, t, **cond).to(x.dtype)
            fake_out = model.fake_score(x_t, t.to(x.dtype), **cond)
            fake = to_x0_eps(fake_out, self.fake_prediction, x_t, c)[0]
            dims = tuple(range(1, x.ndim))
            norm = (x.detach() - real).abs().mean(dims, keepdim=True).clamp_min(1e-6)
            grad = (fake - real) / norm  # DMD Eq. 8 in data-estimate form
        loss = 0.5 * ((x - (x - grad).detach()) ** 2).reshape(b, -1).sum(1).mean()
        return loss, grad.abs().mean()

    def _fake_loss(
        self, model: DMDModel, x: Tensor, cond: dict[str, Any], generator: torch.Generator | None
    ) -> Tensor:
        b = x.shape[0]
        t = self._times(b, x.device, generator)
        c = coefficients(self.schedule, t, x)
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x0 = x.detach()
        out = model.fake_score(c.alpha * x0 + c.sigma * noise, t.to(x.dtype), **cond)
        target = from_x0_eps(x0, noise, self.fake_prediction, c)
        return ((out - target) ** 2).reshape(b, -1).mean(1).mean()

    def __call__(
        self, model: DMDModel, batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(batch, Mapping) or "x" not in batch or "noise" not in batch:
            raise TypeError(
                "batch: expected a dict with keys 'x' (teacher outputs y_ref) and 'noise' (z_ref)"
            )
        if not isinstance(model, DMDModel):
            raise TypeError(
                f"model: expected a DMDModel (generator + fake_score), got {type(model).__name__}"
            )
        y_ref, z_ref = batch["x"], batch["noise"]
        cond = {k: v for k, v in batch.items() if k not in ("x", "noise")}
        z = torch.randn(y_ref.shape, device=y_ref.device, dtype=y_ref.dtype, generator=generator)
        x = self.generate(model.generator, z, **cond)
        matching, grad_size = self._matching_loss(model, x, cond, generator)
        fake = self._fake_loss(model, x, cond, generator)
        loss = matching + fake
        logs = {"matching": matching.detach(), "fake_score": fake.detach(), "dm_grad": grad_size}
        if self.regression_weight > 0:
            regression = ((self.generate(model.generator, z_ref, **cond) - y_ref) ** 2).reshape(
                y_ref.shape[0], -1
            )
            regression = regression.mean(1).mean()
            loss = loss + self.regression_weight * regression
            logs["regression"] = regression.detach()
        return loss, logs
