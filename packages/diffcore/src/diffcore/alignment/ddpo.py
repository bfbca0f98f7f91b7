"""DDPO: denoising as a multi-step decision process, trained by policy gradient (Black et al. 2023, "Training
Diffusion Models with Reinforcement Learning").

Each sampler step is a Gaussian policy ``pi_theta(x_s | x_t) = N(mu_theta(x_t, t), c^2 I)``: the DDIM step with
``eta > 0`` (Song et al. 2021, Eq. 12; ``eta = 1`` is the DDPM posterior with its "small" variance)::

    mu = alpha_s x0_theta + sqrt(sigma_s^2 - c^2) eps_theta,     c = eta * sigma_s sqrt(1 - r^2),
    r = alpha_t sigma_s / (alpha_s sigma_t)                      (diffcore.sampling.steps.posterior_std)

:func:`rollout` samples ``x_{t_0} -> ... -> x_{t_N}`` and records ``log pi(x_s | x_t)`` of every step; the reward
``r(x_{t_N})`` of the final state is the return. The score-function gradient (DDPO-SF, their Eq. 4)
``E[r sum_i grad log pi(x_{i+1} | x_i)]`` is unbiased; DDPO-IS (their Eq. 5) reuses a rollout for several
updates through the importance ratio ``pi_theta / pi_old``, clipped as in PPO (Schulman et al. 2017, Eq. 7):
:func:`ppo_loss`. Rewards are normalised per prompt (their Sec. 4.3 / App. B): :class:`PerPromptNormalizer`.

**The last step.** A sampler's step onto ``t = 0`` returns the ``x0`` estimate, a deterministic function of
the state; its parameter dependence would escape the score-function gradient. The policy therefore stops at a
grid time ``t_N > 0`` (every step stochastic, ``c > 0``), and its sample is the state there: pass a grid that
ends above zero (e.g. ``diffcore.sampling.grids.resolve(..., t_end=0.02)``). The samples carry the path's noise
``sigma(t_N)`` (0.04 at ``t_N = 0.02`` on ``vp-cosine``).

Time runs from ``t = 1`` (noise) to ``t = 0`` (data); ``x``: ``(B, ...)``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, scalar_coefficients
from diffcore.sampling.steps import GridPoint, grid_points, posterior_std, randn

__all__ = [
    "PerPromptNormalizer",
    "Rollout",
    "gaussian_log_prob",
    "policy_step",
    "ppo_loss",
    "ppo_update",
    "rollout",
    "step_log_prob",
]

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """``log N(x; mean, std^2 I)`` per sample ``(B,)``, summed over every non-batch dimension, in float32 at
    least."""
    z = ((x.float() if x.dtype in (torch.float16, torch.bfloat16) else x) - mean) / std
    d = z[0].numel()
    return -0.5 * (z**2).reshape(len(z), -1).sum(1) - d * (math.log(std) + 0.5 * LOG_2PI)


def _check_step(cur: GridPoint, nxt: GridPoint, eta: float) -> float:
    """The policy's standard deviation ``c`` of the step ``cur -> nxt`` (must be > 0)."""
    if nxt.is_data:
        raise ValueError(
            "grid: DDPO's policy must end at a time > 0 (the step onto t = 0 is deterministic); end the grid "
            "at a small t, e.g. t_end=0.02"
        )
    c = eta * posterior_std(cur, nxt)
    if not c > 0:
        raise ValueError(f"eta: expected a stochastic step (eta > 0), got eta={eta} (std {c})")
    return c


def policy_step(
    denoiser: DenoiserBase, x: Tensor, cur: GridPoint, nxt: GridPoint, eta: float, cond: dict[str, Any]
) -> tuple[Tensor, float]:
    """The Gaussian policy of one step: ``(mu_theta(x, t), c)`` (see the module docstring); differentiable in
    the denoiser's parameters."""
    c = _check_step(cur, nxt, eta)
    d = denoiser.estimate(x, cur.t, **cond)
    mean = d.combine(x0=nxt.alpha, eps=math.sqrt(max(nxt.sigma**2 - c * c, 0.0)))
    return mean, c


@dataclass
class Rollout:
    """One batch of policy trajectories.

    Attributes:
        states: ``(N + 1, B, ...)``: the state at every grid time; ``states[0]`` the start, ``states[-1]`` the
            sample.
        log_probs: ``(N, B)``: ``log pi_old(states[i + 1] | states[i])`` under the policy that sampled them.
        grid: the ``(N + 1,)`` float64 times.
        eta: the DDIM stochasticity of the policy.
        cond: the network keyword arguments of every step (batch-first tensors).
    """

    states: Tensor
    log_probs: Tensor
    grid: Tensor
    eta: float
    cond: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> Tensor:
        """The final states ``(B, ...)``."""
        return self.states[-1]

    @property
    def num_steps(self) -> int:
        return len(self.log_probs)


@torch.no_grad()
def rollout(
    denoiser: DenoiserBase,
    noise: Tensor,
    grid: Tensor,
    *,
    eta: float = 1.0,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample with the stochastic DDIM policy over ``grid`` and record each step's log-probability.

    Args:
        noise: standard normal ``(B, ...)``; the start is ``sigma(grid[0]) * noise``, as in ``diffcore.sample``.
        grid: decreasing times from ``grid[0]`` to ``grid[-1] > 0`` (float64).
        eta: DDIM's ``eta > 0`` (1: the DDPM posterior).
        generator: draws each step's noise, exactly as ``diffcore.sample(..., "ddim", eta=eta)`` does, so both
            give the same states from the same generator.
    """
    cond = dict(cond or {})
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()
    points = grid_points(denoiser.schedule, grid)
    if len(points) < 2:
        raise ValueError(f"grid: expected at least two times, got {grid.tolist()}")
    x = scalar_coefficients(denoiser.schedule, points[0].t).sigma * noise
    states, log_probs = [x], []
    for cur, nxt in itertools.pairwise(points):
        mean, c = policy_step(denoiser, x, cur, nxt, eta, cond)
        x = torch.add(mean, randn(mean, generator), alpha=c)
        states.append(x)
        log_probs.append(gaussian_log_prob(x, mean, c))
    return Rollout(torch.stack(states), torch.stack(log_probs), grid, float(eta), cond)


def step_log_prob(
    denoiser: DenoiserBase, rolled: Rollout, step: int, index: Tensor | slice = slice(None)
) -> Tensor:
    """``log pi_theta(states[step + 1] | states[step])`` ``(b,)`` under the denoiser's current parameters, for the
    trajectories ``index`` (with gradients: the new policy of the importance ratio)."""
    if not 0 <= step < rolled.num_steps:
        raise ValueError(f"step: expected 0 <= step < {rolled.num_steps}, got {step}")
    cur, nxt = grid_points(denoiser.schedule, rolled.grid[step : step + 2])
    cond = {k: (v[index] if isinstance(v, Tensor) else v) for k, v in rolled.cond.items()}
    mean, c = policy_step(denoiser, rolled.states[step][index], cur, nxt, rolled.eta, cond)
    return gaussian_log_prob(rolled.states[step + 1][index], mean, c)


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_range: float = 1e-4,
    adv_clip: float = 5.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The clipped importance-sampling policy-gradient loss of DDPO-IS (Black et al. 2023, Eq. 5 with PPO's clip,
    Schulman et al. 2017, Eq. 7), all ``(B,)``::

        loss = mean_b max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)),     ratio = exp(log_prob - old_log_prob)

    ``A`` is ``advantages`` clipped to ``[-adv_clip, adv_clip]``. At ``ratio = 1`` its gradient is
    ``-mean(A grad log_prob)``, the score-function estimator (DDPO-SF). Logs: ``approx_kl``
    (``mean (log ratio)^2 / 2``) and ``clip_fraction``."""
    if not (log_prob.shape == old_log_prob.shape == advantages.shape and log_prob.ndim == 1):
        raise ValueError(
            f"log_prob, old_log_prob, advantages: expected three (B,) tensors, got {tuple(log_prob.shape)}, "
            f"{tuple(old_log_prob.shape)}, {tuple(advantages.shape)}"
        )
    if not clip_range > 0 or not adv_clip > 0:
        raise ValueError(f"clip_range, adv_clip: expected > 0, got {clip_range}, {adv_clip}")
    adv = advantages.clamp(-adv_clip, adv_clip).to(log_prob.dtype)
    log_ratio = log_prob - old_log_prob.to(log_prob.dtype)
    ratio = torch.exp(log_ratio)
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)).mean()
    logs = {
        "approx_kl": (0.5 * log_ratio.detach() ** 2).mean(),
        "clip_fraction": ((ratio.detach() - 1.0).abs() > clip_range).float().mean(),
    }
    return loss, logs


def ppo_update(
    denoiser: DenoiserBase,
    rolled: Rollout,
    advantages: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int | None = None,
    clip_range: float = 1e-4,
    adv_clip: float = 5.0,
    timestep_fraction: float = 1.0,
    max_grad_norm: float | None = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass of DDPO-IS over a rollout: shuffled minibatches of ``batch_size`` trajectories; for each, the
    gradients of :func:`ppo_loss` over a random ``timestep_fraction`` of the steps are accumulated (averaged)
    and the optimizer steps once (Black et al. 2023, Alg. 1 / App. B).

    ``advantages``: ``(B,)`` (e.g. :class:`PerPromptNormalizer` of the rewards). Returns the mean logs and
    ``loss``."""
    b = rolled.samples.shape[0]
    if advantages.shape != (b,):
        raise ValueError(f"advantages: expected shape ({b},), got {tuple(advantages.shape)}")
    if not 0.0 < timestep_fraction <= 1.0:
        raise ValueError(f"timestep_fraction: expected a fraction in (0, 1], got {timestep_fraction}")
    batch_size = b if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    n_steps = max(1, round(timestep_fraction * rolled.num_steps))
    order = torch.randperm(b, generator=generator)
    totals: dict[str, float] = {}
    count = 0
    for start in range(0, b, batch_size):
        index = order[start : start + batch_size].to(rolled.states.device)
        steps = torch.randperm(rolled.num_steps, generator=generator)[:n_steps].tolist()
        optimizer.zero_grad(set_to_none=True)
        for i in steps:
            lp = step_log_prob(denoiser, rolled, i, index)
            loss, logs = ppo_loss(lp, rolled.log_probs[i, index], advantages[index], clip_range, adv_clip)
            if loss.requires_grad:  # a step whose mean ignores the parameters (alpha_t = 0, eta = 1) has none
                (loss / n_steps).backward()
            for k, v in {"loss": loss.detach(), **logs}.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            count += 1
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
    return {k: v / count for k, v in totals.items()}


class PerPromptNormalizer:
    """Per-prompt reward normalisation (Black et al. 2023, App. B): the advantage of a reward is
    ``(r - mean_p) / (std_p + eps)`` with the running mean and standard deviation of the last ``buffer_size``
    rewards of its prompt ``p`` (all of them when ``buffer_size`` is None); while a prompt has fewer than
    ``min_count`` rewards, the statistics of the whole current batch stand in.

    Prompts are any hashable keys (caption strings, class labels)."""

    def __init__(self, buffer_size: int | None = 32, min_count: int = 16, eps: float = 1e-6) -> None:
        if buffer_size is not None and buffer_size < 1:
            raise ValueError(f"buffer_size: expected >= 1 or None, got {buffer_size}")
        if min_count < 1:
            raise ValueError(f"min_count: expected >= 1, got {min_count}")
        self.buffer_size, self.min_count, self.eps = buffer_size, min_count, eps
        self.buffers: dict[Any, deque[float]] = {}

    def __call__(self, prompts: Sequence[Any], rewards: Tensor) -> Tensor:
        """Record ``rewards`` ``(B,)`` under ``prompts`` (``B`` keys) and return their advantages ``(B,)``."""
        if rewards.ndim != 1 or len(prompts) != len(rewards):
            raise ValueError(
                f"prompts, rewards: expected B keys and a (B,) tensor, got {len(prompts)} and {tuple(rewards.shape)}"
            )
        values = rewards.detach().double().cpu()
        batch_mean, batch_std = float(values.mean()), float(values.std(unbiased=False))
        for p, r in zip(prompts, values.tolist()):
            self.buffers.setdefault(p, deque(maxlen=self.buffer_size)).append(r)
        out = torch.empty_like(values)
        for i, p in enumerate(prompts):
            stats = self.buffers[p]
            if len(stats) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                t = torch.tensor(list(stats), dtype=torch.float64)
                mean, std = float(t.mean()), float(t.std(unbiased=False))
            out[i] = (values[i] - mean) / (std + self.eps)
        return out.to(device=rewards.device, dtype=rewards.dtype)

    def counts(self) -> dict[Any, int]:
        """How many rewards each prompt's buffer holds."""
        return {p: len(b) for p, b in self.buffers.items()}
