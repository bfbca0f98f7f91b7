"""Reward-weighted fine-tuning: the simplest alignment baseline (Lee et al. 2023, "Aligning Text-to-Image Models
using Human Feedback", Eq. 2; reward-weighted regression, Peters & Schaal 2007).

Samples of the model are scored by a reward and the model is fine-tuned on them with the ordinary objective,
each sample's loss weighted by ``exp(r / temperature)`` normalised over the batch::

    loss = sum_b  softmax(r / temperature)_b * loss_b

The weights sum to one, so the loss has the objective's scale at any temperature; ``temperature -> inf`` is
plain fine-tuning on the samples, ``temperature -> 0`` keeps only the best sample of each batch. On infinite data
the fixed point is the model tilted by ``exp(r / temperature)``, the same target as KL-regularised reward
maximisation, reached here by regression on re-weighted samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffcore.training.objectives import DiffusionObjective, split_batch

__all__ = ["RewardWeightedObjective", "reward_weights"]


def reward_weights(rewards: Tensor, temperature: float) -> Tensor:
    """``softmax(rewards / temperature)`` ``(B,)``: ``exp(r / temperature)`` normalised to sum to one."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    if rewards.ndim != 1:
        raise ValueError(f"rewards: expected a (B,) tensor, got shape {tuple(rewards.shape)}")
    return torch.softmax(rewards.double() / temperature, dim=0).to(rewards.dtype)


@dataclass
class RewardWeightedObjective:
    """The objective on batches ``{"x": samples, "reward": (B,), **cond}``, each sample's loss weighted by
    :func:`reward_weights` (for the Trainer: ``objective(model, batch, generator)``).

    Args:
        objective: the model's training objective (its ``t`` sampler, target and weighting).
        temperature: of the weights; in the reward's units.
    """

    objective: DiffusionObjective
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.objective, DiffusionObjective):
            raise TypeError(f"objective: expected a DiffusionObjective, got {type(self.objective).__name__}")
        reward_weights(torch.zeros(1), self.temperature)  # validates the temperature

    def __call__(
        self, model: Callable[..., Tensor], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(batch, Mapping) or "reward" not in batch:
            raise TypeError("batch: expected a dict with 'x', 'reward' (B,) and conditioning keys")
        x0, cond = split_batch({k: v for k, v in batch.items() if k not in ("reward", "prompt")})
        weights = reward_weights(batch["reward"].to(x0.device), self.temperature)
        t = self.objective.time_sampler(len(x0), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        loss_b, raw = self.objective.per_sample_loss(model, x0, noise, t, cond)
        loss = (weights.to(loss_b.dtype) * loss_b).sum()
        effective = 1.0 / (weights.double() ** 2).sum()  # Kish's effective sample size of the weights
        return loss, {"loss_unweighted": raw.mean().detach(), "effective_samples": effective.detach().float()}
