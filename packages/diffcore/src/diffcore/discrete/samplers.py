"""Samplers of discrete diffusion: stateless functions sharing one signature.

A *discrete denoiser* is any callable ``denoiser(x_t, t) -> log p(x_0 | x_t)`` with ``x_t`` (B, L) int64,
``t`` (B,) in [0, 1] (0 = data) and output (B, L, K) log-probabilities over clean tokens (for the absorbing
process, SUBS: :func:`diffcore.discrete.parameterization.subs_log_probs`). Samplers never see a network.

- :func:`masked_ancestral_sample`: MDLM's ancestral sampler (Sahoo et al. 2024, Eq. 7 / Alg. 2) on a time
  grid, with caching of unchanged predictions: when a step unmasks nothing, ``x_t`` did not change and a
  time-independent denoiser (MDLM / BD3-LM with the log-linear schedule) would return the same output,
  so the previous one is reused (MDLM Sec. 3.3; BD3-LM Sec. 5).
- :func:`masked_first_hitting_sample`: the first-hitting sampler (Zheng et al. 2024, Alg. 1): draws the exact
  time at which the next token unmasks and unmasks exactly one token per denoiser call.
- :func:`uniform_ancestral_sample`: ancestral sampling of the uniform process with the exact mixture
  ``p(x_s | x_t) = sum_{x_0} p(x_0 | x_t) q(x_s | x_t, x_0)`` (Austin et al. 2021, Eq. 4).

Tokens of ``x`` that are already unmasked (absorbing) or flagged ``fixed`` (uniform) are never changed:
that is how prompts and infilling work. All randomness comes from ``generator``; given the same generator
state two runs draw identical numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffcore.discrete.categorical import sample_categorical, shape_log_probs
from diffcore.discrete.schedules import DiscreteSchedule

__all__ = [
    "DiscreteDenoiser",
    "masked_ancestral_sample",
    "masked_first_hitting_sample",
    "time_grid",
    "uniform_ancestral_sample",
]

DiscreteDenoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoiser(x_t: (B, L) int64, t: (B,)) -> (B, L, K)`` log-probabilities of ``x_0``."""


def time_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Tensor:
    """``steps + 1`` times uniform in ``t`` from ``t_max`` down to ``t_min`` (float64)."""
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"t_min, t_max: expected 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)


def _full(x: Tensor, value: float) -> Tensor:
    return torch.full((x.shape[0],), float(value), dtype=torch.float32, device=x.device)


def masked_ancestral_sample(
    denoiser: DiscreteDenoiser,
    x: Tensor,
    times: Tensor,
    *,
    schedule: DiscreteSchedule,
    mask_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    cache_predictions: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MDLM ancestral sampling from ``times[0]`` to ``times[-1]`` (use ``times[-1] = 0`` to finish).

    x: (B, L) start tokens, ``mask_id`` where to generate. times: decreasing grid (see :func:`time_grid`).
    From ``t`` to ``s`` each masked token unmasks with probability ``(alpha_s - alpha_t) / (1 - alpha_t)`` to a
    token drawn from the (temperature / top-p shaped) denoiser. The unmasking decisions are drawn first and
    the denoiser's output is needed only for the tokens that unmask, so a step that unmasks nothing costs
    neither a denoiser call nor a token draw, and a draw covers only the unmasking tokens (same distribution
    as drawing every masked token and keeping the unmasking ones). ``cache_predictions`` reuses the last
    output while ``x`` is unchanged (only valid for time-independent denoisers: MDLM Sec. 3.3, BD3-LM Sec. 5);
    without it the denoiser is called at every step. Returns (B, L).
    """
    x = x.clone()
    raw: Tensor | None = None
    grid = times.detach().to("cpu", torch.float64)
    alphas = schedule.alpha(grid).tolist()  # host floats, computed once (no tensor work per step)
    for i in range(len(grid) - 1):
        t, a_t, a_s = float(grid[i]), alphas[i], alphas[i + 1]
        if not cache_predictions:
            raw = denoiser(x, _full(x, t))
        p_unmask = min(max((a_s - a_t) / (1.0 - a_t), 0.0), 1.0) if a_t < 1.0 else 1.0
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        rows, cols = ((x == mask_id) & (u < p_unmask)).nonzero(as_tuple=True)  # the one host sync of a step
        if rows.numel() == 0:  # nothing unmasks: x and the cached prediction stay
            continue
        if raw is None:
            raw = denoiser(x, _full(x, t))
        x[rows, cols] = sample_categorical(shape_log_probs(raw[rows, cols], temperature, top_p), generator)
        raw = None
    return x


def masked_first_hitting_sample(
    denoiser: DiscreteDenoiser,
    x: Tensor,
    *,
    schedule: DiscreteSchedule,
    mask_id: int,
    t_start: float = 1.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """First-hitting sampling (Zheng et al. 2024, Alg. 1): one token per step, at its exact unmasking time.

    With ``n`` masked tokens at time ``t``, the next unmasking time ``s`` solves
    ``1 - alpha(s) = (1 - alpha(t)) u^(1/n)``, ``u ~ U(0, 1)``; a uniformly chosen masked position is then filled
    from ``p(x_0 | x_s)``. Exact for an exact denoiser (no factorisation error). x: (B, L). Returns (B, L).
    """
    x = x.clone()
    t = torch.full((x.shape[0],), float(t_start), dtype=torch.float64, device=x.device)
    while True:
        masked = x == mask_id
        n = masked.sum(-1)
        active = n > 0
        if not bool(active.any()):
            return x
        u = torch.rand(t.shape, generator=generator, dtype=torch.float64, device=x.device)
        one_minus_alpha = (1.0 - schedule.alpha(t)) * u ** (1.0 / n.clamp(min=1).double())
        t = torch.where(active, schedule.t_from_alpha(1.0 - one_minus_alpha).clamp(0.0, 1.0), t)
        log_probs = shape_log_probs(denoiser(x, t.float()), temperature, top_p)
        candidates = sample_categorical(log_probs, generator)
        scores = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        position = torch.where(masked, scores, torch.full_like(scores, -1.0)).argmax(-1)
        chosen = torch.nn.functional.one_hot(position, x.shape[1]).bool() & active.unsqueeze(-1)
        x = torch.where(chosen, candidates, x)


def _uniform_posterior(log_probs: Tensor, x: Tensor, a_t: float, a_s: float) -> Tensor:
    """``log p(x_s | x_t) = log sum_{x0} p(x0|x_t) q(x_s|x_t,x0)`` for the uniform process, (B, L, K)."""
    k = log_probs.shape[-1]
    p = log_probs.double().exp()
    onehot = torch.nn.functional.one_hot(x, k).double()
    q_xt_given_x0 = a_t * onehot + (1.0 - a_t) / k
    w = p / q_xt_given_x0
    mix = a_s * w + (1.0 - a_s) / k * w.sum(-1, keepdim=True)
    a_ts = a_t / a_s
    q_xt_given_xs = a_ts * onehot + (1.0 - a_ts) / k
    post = q_xt_given_xs * mix
    return torch.log(post / post.sum(-1, keepdim=True))


def uniform_ancestral_sample(
    denoiser: DiscreteDenoiser,
    x: Tensor,
    times: Tensor,
    *,
    schedule: DiscreteSchedule,
    temperature: float = 1.0,
    top_p: float = 1.0,
    fixed: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral sampling of the uniform process from ``times[0]`` to ``times[-1]``.

    x: (B, L) start tokens (uniform noise at ``t = 1``). fixed: optional (B, L) bool, positions never changed.
    Temperature / top-p shape the denoiser's ``p(x_0 | x_t)`` before the exact posterior mixture.
    """
    x = x.clone()
    for i in range(len(times) - 1):
        t, s = float(times[i]), float(times[i + 1])
        a_t = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
        a_s = float(schedule.alpha(torch.tensor(s, dtype=torch.float64)))
        log_probs = shape_log_probs(denoiser(x, _full(x, t)), temperature, top_p)
        new = sample_categorical(_uniform_posterior(log_probs, x, a_t, a_s), generator)
        x = new if fixed is None else torch.where(fixed, x, new)
    return x
