"""Rectified-flow reflow (Liu et al. 2023, "Flow Straight and Fast", Sec. 2.2-2.3; Lee et al. 2024,
"Improving the Training of Rectified Flows").

A trained flow defines a deterministic coupling of noise and data: integrate its probability-flow ODE
from noise ``z`` (``t = 1``) to data ``x0 = Phi(z)`` (``t = 0``). Reflow retrains a flow on these pairs,
``x_t = alpha_t x0 + sigma_t z`` with the *coupled* ``z`` (the 2-rectified flow); its paths are straighter,
so few Euler steps suffice. Training the velocity only at ``t = 1`` on the pairs distils the flow to one
step (``x0 = z - v(z, 1)`` on the rectified-flow path). Lee et al. sample ``t`` from a U-shaped density
(``diffcore.training.time_sampling.UShaped``), the default here.

Batches are dicts ``{"x": x0, "noise": z, **cond}``; :func:`couplings_loader` builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diffcore.distill.teacher import coefficients
from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.predictions import Prediction, check_prediction, from_x0_eps, to_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.sampling.sample import sample
from diffcore.training import time_sampling as timesteps_mod


@torch.no_grad()
def generate_couplings(
    denoiser: DenoiserBase,
    noise: Tensor,
    sampler: str = "heun",
    steps: int = 32,
    cond: dict[str, Any] | None = None,
    batch_size: int = 4096,
) -> Tensor:
    """``x0 = Phi(noise)``: the end points of the deterministic ODE from ``noise`` (B, ...) at ``t = 1``,
    computed in chunks of ``batch_size`` with the named (deterministic) sampler."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    cond = cond or {}
    outs = []
    for start in range(0, noise.shape[0], batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in cond.items()}
        outs.append(sample(denoiser, noise[start : start + batch_size], sampler, steps, cond=chunk))
    return torch.cat(outs)


class CouplingDataset(Dataset):
    """Pairs ``(x0[i], noise[i])`` (and per-sample conditioning) as dicts ``{"x", "noise", **cond}``."""

    def __init__(self, x0: Tensor, noise: Tensor, cond: dict[str, Tensor] | None = None) -> None:
        if x0.shape != noise.shape:
            raise ValueError(
                f"noise: expected shape {tuple(x0.shape)} (that of x0), got {tuple(noise.shape)}"
            )
        self.x0, self.noise, self.cond = x0, noise, dict(cond or {})

    def __len__(self) -> int:
        return self.x0.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x0[i], "noise": self.noise[i], **{k: v[i] for k, v in self.cond.items()}}


def couplings_loader(
    x0: Tensor, noise: Tensor, batch_size: int, cond: dict[str, Tensor] | None = None, shuffle: bool = True
) -> DataLoader:
    """A DataLoader of coupled batches ``{"x": (B, ...), "noise": (B, ...), **cond}``."""
    return DataLoader(
        CouplingDataset(x0, noise, cond), batch_size=batch_size, shuffle=shuffle, drop_last=True
    )


@dataclass
class CoupledFlowMatching:
    """Flow matching on given noise-data pairs (reflow): regress the path velocity (or any prediction) at
    ``x_t = alpha_t x0 + sigma_t z`` for the pair's own ``z``.

    Args:
        schedule: the path (default the rectified-flow path ``alpha = 1 - t``, ``sigma = t``).
        prediction: what the network outputs (default ``velocity``: target ``d_alpha x0 + d_sigma z``).
        time_sampler: a ``diffcore.training.time_sampling`` sampler or name (default ``u-shaped``, Lee et al. 2024);
            ``timesteps.Constant(1.0)`` is one-step distillation.
    """

    schedule: Schedule | str = "rectified-flow"
    prediction: Prediction = "velocity"
    time_sampler: Callable[..., Tensor] | str = "u-shaped"

    def __post_init__(self) -> None:
        self.schedule = get_schedule(self.schedule) if isinstance(self.schedule, str) else self.schedule
        check_prediction(self.prediction)
        if isinstance(self.time_sampler, str):
            self.time_sampler = timesteps_mod.get(self.time_sampler)

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(batch, Mapping) or "x" not in batch or "noise" not in batch:
            raise TypeError("batch: expected a dict with keys 'x' (data) and 'noise' (its coupled noise)")
        x0, z = batch["x"], batch["noise"]
        cond = {k: v for k, v in batch.items() if k not in ("x", "noise")}
        t = self.time_sampler(x0.shape[0], device=x0.device, generator=generator)
        c = coefficients(self.schedule, t, x0)
        x_t = c.alpha * x0 + c.sigma * z
        out = model(x_t, t.to(x0.dtype), **cond)
        target = from_x0_eps(x0, z, self.prediction, c)
        loss = ((out - target) ** 2).reshape(x0.shape[0], -1).mean(1).mean()
        x0_hat, _ = to_x0_eps(out.detach(), self.prediction, x_t, c)
        return loss, {"x0_mse": ((x0_hat - x0) ** 2).mean().detach()}


def one_step_distillation(schedule: Schedule | str = "rectified-flow", prediction: Prediction = "velocity"):
    """Liu et al. 2023, Sec. 2.3: distil a (reflowed) flow to one step by training only at ``t = 1`` on its
    couplings, so one Euler step ``x0 = z - v(z, 1)`` reproduces the coupling."""
    return CoupledFlowMatching(schedule, prediction, timesteps_mod.Constant(1.0))
