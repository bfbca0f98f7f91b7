"""Continuous-time negative ELBO of discrete diffusion, per token (nats).

Masked (absorbing) process, MDLM (Sahoo et al. 2024) Eq. 10 / BD3-LM (Arriola et al. 2025) Eq. 8::

    NELBO = E_{t ~ U[0,1]} E_{x_t ~ q_t(.|x_0)} sum_l  -alpha'(t) / (1 - alpha(t)) [x_t^l = MASK] (-log p(x_0^l | x_t))

Uniform process: the path-space KL between the forward chain and the model's reverse chain (Campbell et
al. 2022, "A continuous time framework for discrete denoising models", Prop. 2; the same Bregman form
as the diffusion-weighted denoising score entropy of SEDD, Lou et al. 2024, Eq. 10)::

    NELBO = E_t E_{x_t} sum_l sum_{y != x_t^l} Rhat_theta(y) - Rhat_0(y) + Rhat_0(y) log(Rhat_0(y) / Rhat_theta(y))

with the reverse rates of the uniform forward rate ``beta(t)/K`` (``beta = -alpha'/alpha``):
``Rhat_0(y) = beta/K q_t(y|x_0)/q_t(x_t|x_0)`` given the clean token and
``Rhat_theta(y) = sum_{x_0} p_theta(x_0 | x_t) Rhat_{x_0}(y)`` (the exact mixture, so the bound is tight when
``p_theta`` is the true posterior). ``alpha(1) = 0`` makes the prior term vanish in both cases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffcore.discrete.schedules import DiscreteSchedule

__all__ = ["masked_nelbo_terms", "uniform_nelbo_terms"]


def _per_token(t: Tensor, like: Tensor) -> Tensor:
    while t.dim() < like.dim():
        t = t.unsqueeze(-1)
    return t.expand_as(like)


def masked_nelbo_terms(
    log_probs: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, schedule: DiscreteSchedule, mask_id: int
) -> Tensor:
    """Per-token NELBO terms of the absorbing process (MDLM Eq. 10).

    log_probs: (B, L, K) ``log p(x_0 | x_t)`` (SUBS). x0, x_t: (B, L). t: (B,) one time per sequence, or
    (B, L) one per token (BD3-LM's one time per block, repeated over the block). Returns (B, L): zero at
    unmasked tokens, ``-alpha'/(1-alpha) * (-log p(x_0^l | x_t))`` at masked ones. Sum over L for nats/sequence.
    """
    if log_probs.shape[:-1] != x0.shape or x0.shape != x_t.shape:
        raise ValueError(
            f"log_probs, x0, x_t: expected (B, L, K), (B, L), (B, L); got {tuple(log_probs.shape)}, "
            f"{tuple(x0.shape)}, {tuple(x_t.shape)}"
        )
    t_tok = _per_token(t.to(torch.float64), x0.double())
    nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1).float()
    masked = x_t == mask_id
    weight = schedule.masked_weight(t_tok).to(nll.dtype)
    return torch.where(masked, weight * nll.masked_fill(~masked, 0.0), torch.zeros_like(nll))


def _uniform_model_ratios(p: Tensor, x_t: Tensor, alpha: Tensor, om: Tensor, k: int) -> Tensor:
    """``r_theta(y) = sum_{x0} p(x0|x_t) q_t(y|x0)/q_t(x_t|x0)`` for y != x_t, shape (B, L, K).

    Splitting ``x0 = x_t`` from ``x0 != x_t``: ``p(x_t) (1-a)/(Ka+1-a) + (1 - p(x_t)) + K a p(y)/(1-a)``.
    """
    p_x = p.gather(-1, x_t.unsqueeze(-1))
    stay = om / (k * alpha + om)
    return p_x * stay + (1.0 - p_x) + k * alpha * p / om


def uniform_nelbo_terms(
    log_probs: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, schedule: DiscreteSchedule
) -> Tensor:
    """Per-token NELBO terms of the uniform process (Campbell et al. 2022, Prop. 2), in nats.

    log_probs: (B, L, K) ``log p_theta(x_0 | x_t)`` over the K tokens. x0, x_t: (B, L). t: (B,) or (B, L),
    strictly inside (0, 1). Returns (B, L). Computed in float64.
    """
    if log_probs.shape[:-1] != x0.shape or x0.shape != x_t.shape:
        raise ValueError(
            f"log_probs, x0, x_t: expected (B, L, K), (B, L), (B, L); got {tuple(log_probs.shape)}, "
            f"{tuple(x0.shape)}, {tuple(x_t.shape)}"
        )
    k = log_probs.shape[-1]
    t_tok = _per_token(t.to(torch.float64), x0.double()).unsqueeze(-1)
    alpha = schedule.alpha(t_tok)
    om = schedule.one_minus_alpha(t_tok)
    d_alpha = schedule.d_alpha(t_tok)
    p = log_probs.double().exp()
    r_theta = _uniform_model_ratios(p, x_t, alpha, om, k)
    # true ratios q_t(y|x0)/q_t(x_t|x0) given the clean token
    stay = om / (k * alpha + om)
    onehot_x0 = torch.nn.functional.one_hot(x0, k).double()
    r_moved = 1.0 + onehot_x0 * (k * alpha / om)
    unchanged = (x0 == x_t).unsqueeze(-1)
    r_0 = torch.where(unchanged, stay.expand_as(r_theta), r_moved)
    bregman = r_theta - r_0 + r_0 * (torch.log(r_0) - torch.log(r_theta))
    not_self = 1.0 - torch.nn.functional.one_hot(x_t, k).double()
    beta_over_k = torch.where(alpha > 0, -d_alpha / alpha.clamp(min=1e-300), torch.zeros_like(alpha)) / k
    return beta_over_k.squeeze(-1) * (bregman * not_self).sum(-1)
