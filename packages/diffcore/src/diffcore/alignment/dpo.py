"""Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization") and its
supervised baseline, for any Gaussian-path objective (eps, x0, v, velocity, score; any schedule and weighting).

DPO (Rafailov et al. 2023) fits the policy whose implicit reward ``beta log p_theta / p_ref`` explains the
preferences under Bradley-Terry; its optimum is ``p*(x) = p_ref(x) exp(r(x) / beta) / Z``. A diffusion model
has no tractable ``log p``, so Wallace et al. replace the log-ratio by the difference of denoising errors at
one random time and noise (their Eq. 14)::

    L = -log sigmoid( -beta/2 * [ (err_theta(x^w) - err_ref(x^w)) - (err_theta(x^l) - err_ref(x^l)) ] )

with ``err(x) = w(t) * mean ||target - model(x_t, t)||^2`` per sample (the objective's own target and weighting
``w``), ``x_t = alpha_t x + sigma_t eps``, and **one** ``t`` and ``eps`` shared by the winner and its loser.

**The trap.** ``err`` is a per-sample number and the log-sigmoid is taken per pair, then averaged over pairs.
Averaging the errors over the batch first and taking one log-sigmoid of the batch means (as an early public
training script did) is a different loss: its gradient weights every pair by the same batch-level
``sigmoid`` instead of by how wrong that pair's own ordering is, so pairs already ranked right keep pulling
and pairs ranked wrong are not emphasised. ``test_alignment_dpo`` checks the two differ on fixed tensors.

**Scale of beta.** ``err`` is a mean over the sample's dimensions here (as in the diffusers-style recipe
where ``beta = 5000`` for SDXL latents); with the sum over dimensions ``beta`` would be ``D`` times smaller.
With ``weighting="likelihood"`` (``w = -1/2 d lambda/dt``, Kingma et al. 2021, Eq. 17) and one-dimensional data,
``E_{t, eps}[err_theta - err_ref] = -log p_theta(x) / p_ref(x)`` for exact denoisers of each model, so the
bracket is ``beta/2`` times the log-ratio and the target of the fit is ``p_ref exp(2 r / beta) / Z`` (the test
on a Gaussian mixture checks this optimum).

:class:`SupervisedOnWinners` is the SFT baseline of the paper: the plain objective on the preferred samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.training.objectives import DiffusionObjective

__all__ = ["DiffusionDPO", "SupervisedOnWinners", "diffusion_dpo_loss", "split_pair_batch"]


def diffusion_dpo_loss(
    err_w: Tensor, err_l: Tensor, ref_err_w: Tensor, ref_err_l: Tensor, beta: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The Diffusion-DPO loss (Wallace et al. 2023, Eq. 14) from per-sample denoising errors, all ``(B,)``.

    ``loss = mean_b -log sigmoid(-beta/2 * ((err_w - ref_err_w) - (err_l - ref_err_l)))``: one log-sigmoid per
    pair, then the mean over pairs (never the log-sigmoid of batch means; see the module docstring).

    Returns ``(loss, logs)``; logs: ``implicit_accuracy`` (fraction of pairs the model ranks right, i.e. whose
    bracket is negative) and ``reward_margin`` (the mean of ``-beta/2 * bracket``), both detached."""
    shapes = {tuple(e.shape) for e in (err_w, err_l, ref_err_w, ref_err_l)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"err_w, err_l, ref_err_w, ref_err_l: expected four (B,) tensors, got shapes {shapes}"
        )
    if not beta > 0:
        raise ValueError(f"beta: expected > 0, got {beta}")
    margin = -0.5 * beta * ((err_w - ref_err_w) - (err_l - ref_err_l))
    loss = -F.logsigmoid(margin).mean()
    logs = {
        "implicit_accuracy": (margin > 0).float().mean().detach(),
        "reward_margin": margin.mean().detach(),
    }
    return loss, logs


def split_pair_batch(batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``(winner, loser, cond)`` of a pair batch (:class:`~diffcore.alignment.pairs.PreferencePairs`); every other
    key but ``prompt`` is a network keyword argument."""
    if not isinstance(batch, Mapping) or "winner" not in batch or "loser" not in batch:
        raise TypeError("batch: expected a dict with 'winner' and 'loser' (and conditioning keys)")
    cond = {k: v for k, v in batch.items() if k not in ("winner", "loser", "prompt")}
    return batch["winner"], batch["loser"], cond


def _repeat(value: Any, times: int) -> Any:
    return value.repeat(times, *(1,) * (value.ndim - 1)) if isinstance(value, Tensor) else value


@dataclass
class DiffusionDPO:
    """The Diffusion-DPO objective on pair batches, for the Trainer (``objective(model, batch, generator)``).

    Args:
        objective: the model's own training objective (schedule, prediction, target, time sampler, weighting);
            its condition dropout and OT coupling are not used.
        reference: the frozen reference network ``ref(x_t, t, **cond)`` (usually a copy of the starting model);
            evaluated without gradients.
        beta: the KL coefficient (Wallace et al. use 5000 for SDXL with errors averaged over latent pixels).
        draws: ``(t, eps)`` draws per pair whose errors are averaged (per sample) before the log-sigmoid. 1 is
            Eq. 14 of the paper. One draw is an unbiased but noisy estimate of the log-ratio inside a convex
            function, so by Jensen its minimiser sits between ``p_ref`` and the DPO optimum; more draws move it
            to the optimum (``test_alignment_dpo`` measures both on a Gaussian mixture) at ``draws`` times the cost.

    Both networks see the winners and the losers in one batch ``[x^w; x^l]`` at the same ``t`` and noise.
    """

    objective: DiffusionObjective
    reference: Callable[..., Tensor]
    beta: float = 5000.0
    draws: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ValueError(f"draws: expected an integer >= 1, got {self.draws!r}")
        if not isinstance(self.objective, DiffusionObjective):
            raise TypeError(f"objective: expected a DiffusionObjective, got {type(self.objective).__name__}")
        if not callable(self.reference):
            raise TypeError("reference: expected the frozen reference network ref(x_t, t, **cond)")
        if not self.beta > 0:
            raise ValueError(f"beta: expected > 0, got {self.beta}")
        if isinstance(self.reference, nn.Module):
            self.reference.requires_grad_(False)

    def __call__(
        self, model: Callable[..., Tensor], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        winner, loser, cond = split_pair_batch(batch)
        b, k = winner.shape[0], self.draws
        t = self.objective.time_sampler(k * b, device=winner.device, generator=generator)
        noise = torch.randn(
            (k * b, *winner.shape[1:]), device=winner.device, dtype=winner.dtype, generator=generator
        )
        # rows: draw j of winner i at j * 2b + i, of loser i at j * 2b + b + i; both at t[j * b + i], noise[...]
        x = torch.cat([winner, loser]).repeat(k, *(1,) * (winner.ndim - 1))
        t2 = torch.cat([t.reshape(k, b)] * 2, dim=1).reshape(-1)
        noise2 = torch.cat([noise.reshape(k, b, *winner.shape[1:])] * 2, dim=1).reshape(x.shape)
        cond2 = {key: _repeat(v, 2 * k) for key, v in cond.items()}
        err, raw = self.objective.per_sample_loss(model, x, noise2, t2, cond2)
        with torch.no_grad():
            ref_err, _ = self.objective.per_sample_loss(self.reference, x, noise2, t2, cond2)
        err, ref_err = err.reshape(k, 2 * b).mean(0), ref_err.reshape(k, 2 * b).mean(0)
        loss, logs = diffusion_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], self.beta)
        raw = raw.reshape(k, 2 * b).mean(0)
        logs["err_winner"] = raw[:b].mean().detach()
        logs["err_loser"] = raw[b:].mean().detach()
        return loss, logs


@dataclass
class SupervisedOnWinners:
    """The supervised fine-tuning baseline of Diffusion-DPO (Wallace et al. 2023, Sec. 5): the plain objective on
    the preferred sample of each pair, the loser ignored. Takes the same pair batches as :class:`DiffusionDPO`."""

    objective: Callable[..., Any]

    def __call__(
        self, model: Callable[..., Tensor], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> Any:
        winner, _, cond = split_pair_batch(batch)
        return self.objective(model, {"x": winner, **cond}, generator=generator)
