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
gradient (stop-gradients), so the sum trains each part on its own loss. Batches are
``{"x": y_ref, "noise": z_ref, **cond}``.

DMD2 (Yin et al. 2024b, "Improved Distribution Matching Distillation for Fast Image Synthesis"):

- two time-scale update rule (Sec. 4.1): ``generator_every = N`` updates the generator on one step in ``N``
  only (the fake score on every step; DMD2 uses 5), and :func:`dmd_optimizer` can give the fake network a
  larger learning rate;
- GAN loss on the fake score's features (Sec. 4.2, optional, ``gan_weight > 0``): a linear head
  (``DMDModel.gan_head``) on the pooled output of the fake network's module ``gan_feature_module`` classifies
  noised real samples (the batch's ``x``) against noised generated ones (non-saturating loss, Goodfellow et al.
  2014); the generator gets ``gan_weight * softplus(-D(x_t))`` through the fake network's frozen weights;
- backward simulation for multi-step students (Sec. 4.5): with ``student_steps = (1, 2, 4)`` the generator is
  trained at every time of those step counts' sampling grids (``student_grid_name``, default the ``consistency``
  sampler's ``uniform`` grid), each time a equal share of every batch, on inputs made by running the student's
  own multistep chains from noise (without gradients) up to that time (:func:`backward_simulation`), so the
  inputs seen in training are those met in sampling; sample on the same grid.

Two additions make more steps not worse (the 2-D mixture, ``benchmarks/few_step/few_step_gmm.py``):

- ``student_time_key``: one fake distribution for all sampling times only asks the *mixture* of the outputs at
  the different times to match the data (the DMD gradient ``mu_fake - mu_real`` vanishes when the mixture
  does), so one time's errors can offset another's; with the generator's time index as the fake network's
  conditioning, each time's outputs are matched to the data on their own;
- ``student_grid_name="halving"`` (times 1, 1/2, 1/4, 1/8): the grids of 1, 2 and 4 steps are nested, so the
  4-step chain is the 2-step chain plus two steps at low noise; on the uniform grid the 4-step chain passes
  through ``t = 0.75``, the time whose generator was furthest from the data in our runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from diffcore.distill.teacher import coefficients
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.predictions import Prediction, check_prediction, from_x0_eps, to_x0_eps
from diffcore.sampling import grids
from diffcore.sampling import registry as sampling_registry


class DMDModel(nn.Module):
    """The trained pair: ``generator`` and ``fake_score`` (both networks ``net(x_t, t, **cond)``).

    Save the generator alone with ``model.generator.save_pretrained(...)``; sample it in one step with
    :meth:`DistributionMatchingDistillation.generator_denoiser` and the ``consistency`` sampler."""

    def __init__(self, generator: nn.Module, fake_score: nn.Module, gan_features: int | None = None) -> None:
        """``gan_features``: width of the fake network's feature module for DMD2's GAN head (``None``: no head)."""
        super().__init__()
        self.generator, self.fake_score = generator, fake_score
        self.gan_head = nn.Linear(gan_features, 1) if gan_features else None

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """The generator's output (for the Trainer's checks; the objective calls the parts by name)."""
        return self.generator(x, t, **cond)


def uniform_times(
    t_range: tuple[float, float], b: int, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """``(b,)`` float64 times uniform on ``t_range`` (``t = 1`` is noise)."""
    lo, hi = t_range
    return lo + (hi - lo) * torch.rand(b, device=device, generator=generator, dtype=torch.float64)


def fake_score_loss(
    fake_score: nn.Module,
    x: Tensor,
    t: Tensor,
    schedule,
    prediction: Prediction,
    cond: Mapping[str, Any],
    generator: torch.Generator | None,
) -> Tensor:
    """The fake score's denoising loss (DMD Eq. 6) on generated samples ``x`` (detached here) at times ``t``:
    noise ``x`` to ``x_t`` with fresh Gaussian noise, regress ``fake_score(x_t, t)`` on its ``prediction`` target;
    mean squared error per sample, averaged over the batch. Shared by DMD and EMD."""
    b = x.shape[0]
    c = coefficients(schedule, t, x)
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    x0 = x.detach()
    out = fake_score(c.alpha * x0 + c.sigma * noise, t.to(x.dtype), **cond)
    return ((out - from_x0_eps(x0, noise, prediction, c)) ** 2).reshape(b, -1).mean(1).mean()


def dmd_optimizer(model: DMDModel, lr: float, fake_lr_ratio: float = 5.0) -> torch.optim.Optimizer:
    """AdamW (betas 0, 0.99 as in DMD2) with the fake-score network at ``fake_lr_ratio`` times ``lr``."""
    if not fake_lr_ratio > 0:
        raise ValueError(f"fake_lr_ratio: expected > 0, got {fake_lr_ratio}")
    groups = [
        {"params": [p for p in model.generator.parameters() if p.requires_grad], "lr": lr},
        {"params": [p for p in model.fake_score.parameters() if p.requires_grad], "lr": lr * fake_lr_ratio},
    ]
    if model.gan_head is not None:
        groups.append({"params": list(model.gan_head.parameters()), "lr": lr * fake_lr_ratio})
    return torch.optim.AdamW(groups, lr=lr, betas=(0.0, 0.99), weight_decay=0.0)


def student_grid(schedule, steps: int, grid: str | None = None) -> Tensor:
    """The decreasing times ``(steps + 1,)`` of the registered ``grid`` (default: the ``consistency`` sampler's
    default, ``uniform``) in ``steps`` steps: the times a multistep student is trained at and sampled on."""
    return grids.resolve(grid or sampling_registry.get("consistency").default_grid, schedule, steps)


def student_times(schedule, student_steps: tuple[int, ...], grid: str | None = None) -> list[float]:
    """The decreasing times (``t = 0`` excluded) of the union of the ``student_steps`` sampling grids; the index
    of a time in this list is the label :class:`DistributionMatchingDistillation` gives a per-time fake score."""
    grids_by_steps = [student_grid(schedule, int(k), grid).tolist() for k in student_steps]
    return sorted({g for grid in grids_by_steps for g in grid[:-1]}, reverse=True)


def backward_simulation(
    x0_fn,
    schedule,
    student_steps: tuple[int, ...],
    z: Tensor,
    rng: torch.Generator | None = None,
    grid: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Backward simulation (DMD2, Sec. 4.5): ``(x_t, t)``, a multi-step student's inputs at its sampling times,
    made by its own consistency chains from noise ``z`` without gradients.

    Every ``student_steps`` chain ``x0 = x0_fn(x, t_i)``, ``x = alpha(t_{i+1}) x0 + sigma(t_{i+1}) n`` (the
    ``consistency`` sampler's steps, fresh noise ``n``) runs on its grid from ``x = sigma(1) z``; then each
    sample takes a time drawn uniformly from :func:`student_times` and, from one of the grids holding it (drawn
    uniformly), that chain's state at that time. Drawing per sample and time first gives every sampling time
    the same share of every batch (for ``(1, 2, 4)``: 1, 0.75, 0.5, 0.25 a quarter each), so each generator
    update sees all of them; one draw per batch made the updates alternate between times, and drawing the step
    count first gave ``t = 1`` 7/12 of them. ``x0_fn(x, t)`` takes ``t: (B,)``; returns ``t: (B,)`` float64."""
    b = z.shape[0]
    times = student_times(schedule, student_steps, grid)
    ones = torch.ones(b, device=z.device, dtype=torch.float64)
    x1 = coefficients(schedule, ones, z).sigma * z
    candidates: list[list[Tensor]] = [[] for _ in times]  # per time: the chains' states there
    with torch.no_grad():
        for k in sorted({int(k) for k in student_steps}):
            ts, x = student_grid(schedule, k, grid).tolist(), x1
            candidates[times.index(ts[0])].append(x)
            for i in range(len(ts) - 2):
                x0 = x0_fn(x, ones * ts[i])
                c = coefficients(schedule, ones * ts[i + 1], z)
                noise = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=rng)
                x = c.alpha * x0 + c.sigma * noise
                candidates[times.index(ts[i + 1])].append(x)
    pick = torch.randint(0, len(times), (b,), generator=rng, device=z.device)
    out, t = torch.empty_like(z), torch.empty(b, device=z.device, dtype=torch.float64)
    for j, states in enumerate(candidates):
        chosen = torch.randint(0, len(states), (b,), generator=rng, device=z.device)
        for m, state in enumerate(states):
            mask = (pick == j) & (chosen == m)
            out[mask] = state[mask]
        t[pick == j] = times[j]
    return out, t


@dataclass
class DistributionMatchingDistillation:
    """The DMD objective for a :class:`DMDModel`.

    Args:
        teacher: the frozen teacher denoiser (the real score); its schedule is the path used.
        generator_prediction: what the generator outputs at ``t = 1`` (``x0``; any kind that determines x0).
        fake_prediction: what the fake-score network outputs.
        regression_weight: ``lambda_reg`` of the regression term (0.25 in DMD; 0 disables it).
        t_range: the range of ``t`` of the distribution-matching and fake losses (DMD: 0.02 to 0.98).
        generator_every: update the generator on one step in this many (DMD2's two time-scale rule: 5).
        student_steps: the step counts the generator is trained for by backward simulation (``(1,)``: DMD).
        gan_weight: weight of the generator's GAN loss (0: off; needs ``DMDModel(gan_features=...)``).
        gan_feature_module: the fake network's submodule whose output feeds the GAN head (e.g. ``"mlp.3"``).
        student_time_key: a conditioning key of the fake network; when set, the fake score gets the index of
            the generator's sampling time in :func:`student_times` (``(B,)`` long) under this key, so it models
            each sampling time's outputs apart (see the module docstring; ``None``: one fake distribution).
        student_grid_name: the registered grid of the student's sampling times (``None``: ``uniform``, the
            ``consistency`` sampler's default); sample with ``diffcore.sample(..., "consistency", k,
            grid=<the same name>)``.
    """

    teacher: DenoiserBase
    generator_prediction: Prediction = "x0"
    fake_prediction: Prediction = "x0"
    regression_weight: float = 0.25
    t_range: tuple[float, float] = (0.02, 0.98)
    generator_every: int = 1
    student_steps: tuple[int, ...] = (1,)
    gan_weight: float = 0.0
    gan_feature_module: str | None = None
    student_time_key: str | None = None
    student_grid_name: str | None = None

    def __post_init__(self) -> None:
        if self.generator_every < 1:
            raise ValueError(f"generator_every: expected an integer >= 1, got {self.generator_every}")
        if not self.student_steps or any(int(k) < 1 for k in self.student_steps):
            raise ValueError(f"student_steps: expected step counts >= 1, got {self.student_steps}")
        if self.gan_weight < 0:
            raise ValueError(f"gan_weight: expected >= 0, got {self.gan_weight}")
        if self.gan_weight > 0 and not self.gan_feature_module:
            raise ValueError(
                "gan_feature_module: the GAN loss (gan_weight > 0) needs the fake network's module name"
            )
        self._calls = 0
        student_times(self.schedule, self.student_steps, self.student_grid_name)  # an unknown grid fails here
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

    def student_grid(self, steps: int) -> Tensor:
        """The decreasing times ``(steps + 1,)`` the student is trained at and sampled on in ``steps`` steps."""
        return student_grid(self.schedule, steps, self.student_grid_name)

    def simulate(
        self, generator: nn.Module, z: Tensor, generator_rng: torch.Generator | None = None, **cond: Any
    ) -> tuple[Tensor, Tensor]:
        """:func:`backward_simulation` of this generator over ``student_steps``: ``(x_t, t)``."""
        return backward_simulation(
            lambda x, t: self._x0(generator, x, t, **cond),
            self.schedule,
            self.student_steps,
            z,
            generator_rng,
            self.student_grid_name,
        )

    def _x0(self, generator: nn.Module, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        out = generator(x, t.to(x.dtype) if x.dtype == torch.float64 else t.float(), **cond)
        return to_x0_eps(out, self.generator_prediction, x, coefficients(self.schedule, t, x))[0]

    def generator_denoiser(self, generator: nn.Module) -> Denoiser:
        """The generator as a denoiser: ``diffcore.sample(den, z, "consistency", 1)`` returns ``G(z)``."""
        return Denoiser(generator, self.schedule, self.generator_prediction)

    def _times(self, b: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return uniform_times(self.t_range, b, device, generator)

    def _matching_loss(
        self,
        model: DMDModel,
        x: Tensor,
        cond: dict[str, Any],
        generator: torch.Generator | None,
        fake_cond: dict[str, Any] | None = None,
    ) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        t = self._times(b, x.device, generator)
        c = coefficients(self.schedule, t, x)
        x_t = c.alpha * x.detach() + c.sigma * torch.randn(
            x.shape, device=x.device, dtype=x.dtype, generator=generator
        )
        with torch.no_grad():
            real = self.teacher.x0(x_t, t, **cond).to(x.dtype)
            fake_out = model.fake_score(x_t, t.to(x.dtype), **(cond if fake_cond is None else fake_cond))
            fake = to_x0_eps(fake_out, self.fake_prediction, x_t, c)[0]
            dims = tuple(range(1, x.ndim))
            norm = (x.detach() - real).abs().mean(dims, keepdim=True).clamp_min(1e-6)
            grad = (fake - real) / norm  # DMD Eq. 8 in data-estimate form
        loss = 0.5 * ((x - (x - grad).detach()) ** 2).reshape(b, -1).sum(1).mean()
        return loss, grad.abs().mean()

    def _fake_loss(
        self, model: DMDModel, x: Tensor, cond: dict[str, Any], generator: torch.Generator | None
    ) -> Tensor:
        t = self._times(x.shape[0], x.device, generator)
        return fake_score_loss(model.fake_score, x, t, self.schedule, self.fake_prediction, cond, generator)

    def _logits(self, model: DMDModel, x: Tensor, t: Tensor, cond: dict[str, Any], frozen: bool) -> Tensor:
        """GAN head on the pooled output of the fake network's feature module at ``(x, t)``: ``(B,)`` logits.
        ``frozen``: the fake network's and head's weights are detached (the generator's loss)."""
        if model.gan_head is None:
            raise ValueError("model: the GAN loss needs DMDModel(..., gan_features=<feature width>)")
        seen: list[Tensor] = []
        module = model.fake_score.get_submodule(self.gan_feature_module)  # type: ignore[arg-type]
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            if frozen:
                params = {n: p.detach() for n, p in model.fake_score.named_parameters()}
                functional_call(model.fake_score, params, (x, t.to(x.dtype)), cond)
            else:
                model.fake_score(x, t.to(x.dtype), **cond)
        finally:
            handle.remove()
        h = seen[0]
        if h.ndim == 3:  # (B, N, D) tokens: mean over the tokens
            h = h.mean(1)
        elif h.ndim == 4:  # (B, C, H, W) feature maps: mean over the space
            h = h.mean(dim=(2, 3))
        if frozen:
            w, b = model.gan_head.weight.detach(), model.gan_head.bias.detach()
            return torch.nn.functional.linear(h, w, b).squeeze(-1)
        return model.gan_head(h).squeeze(-1)

    def _gan_losses(
        self,
        model: DMDModel,
        x: Tensor,
        real: Tensor,
        cond: dict[str, Any],
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """``(discriminator loss, generator loss)``: non-saturating GAN on noised real vs generated samples."""
        b = x.shape[0]
        t = self._times(b, x.device, generator)
        c = coefficients(self.schedule, t, x)
        n1, n2 = (torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator) for _ in range(2))
        fake_t, real_t = c.alpha * x + c.sigma * n1, c.alpha * real + c.sigma * n2
        softplus = torch.nn.functional.softplus
        d_loss = (
            softplus(-self._logits(model, real_t, t, cond, False)).mean()
            + softplus(self._logits(model, fake_t.detach(), t, cond, False)).mean()
        )
        g_loss = softplus(-self._logits(model, fake_t, t, cond, True)).mean()
        return d_loss, g_loss

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
        train_generator = self._calls % self.generator_every == 0
        self._calls += 1
        z = torch.randn(y_ref.shape, device=y_ref.device, dtype=y_ref.dtype, generator=generator)
        x_in, t_in = self.simulate(model.generator, z, generator, **cond)
        with torch.set_grad_enabled(train_generator and torch.is_grad_enabled()):
            x = self._x0(model.generator, x_in, t_in, **cond)
        fake_cond = cond
        if self.student_time_key is not None:
            times = student_times(self.schedule, self.student_steps, self.student_grid_name)
            times = torch.tensor(times, device=x.device)
            label = (t_in[:, None] - times[None]).abs().argmin(1)  # the index of each sample's time
            fake_cond = {**cond, self.student_time_key: label}
        fake = self._fake_loss(model, x, fake_cond, generator)
        loss = fake
        logs = {"fake_score": fake.detach(), "generator_step": torch.tensor(float(train_generator))}
        if self.gan_weight > 0:
            d_loss, g_loss = self._gan_losses(model, x, y_ref, fake_cond, generator)
            loss = loss + d_loss
            logs["gan_discriminator"] = d_loss.detach()
            if train_generator:
                loss = loss + self.gan_weight * g_loss
                logs["gan_generator"] = g_loss.detach()
        if not train_generator:  # two time-scale rule: this step updates the fake score (and GAN head) only
            return loss, logs
        matching, grad_size = self._matching_loss(model, x, cond, generator, fake_cond)
        loss = loss + matching
        logs.update(matching=matching.detach(), dm_grad=grad_size)
        if self.regression_weight > 0:
            regression = ((self.generate(model.generator, z_ref, **cond) - y_ref) ** 2).reshape(
                y_ref.shape[0], -1
            )
            regression = regression.mean(1).mean()
            loss = loss + self.regression_weight * regression
            logs["regression"] = regression.detach()
        return loss, logs
