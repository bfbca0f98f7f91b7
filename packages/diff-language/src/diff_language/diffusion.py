"""The BD3-LM objective: masked diffusion inside blocks, one noise level per block (Arriola et al. 2025).

Loss (BD3-LM Eq. 8, MDLM Eq. 10 per block): for each block ``b`` draw ``t_b``, mask the block's tokens with
probability ``1 - alpha(t_b)``, and weight the cross-entropy of its masked tokens by ``-alpha'(t_b)/(1 - alpha(t_b))``
given the noisy block and the clean blocks before it. Times are antithetic over the batch and blocks.

Clipped schedules (BD3-LM Sec. 4): training may draw ``t`` from ``[beta, omega]``; :func:`search_clip_range`
picks the range that minimises the variance of the training loss. :func:`evaluate_nelbo` always uses the
full range [0, 1] so the likelihood bound stays unbiased.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from diffcore.discrete import (
    DiscreteSchedule,
    LogLinear,
    mask_tokens,
    masked_nelbo_terms,
    sample_times,
    subs_log_probs,
)
from torch import Tensor

from diff_language.model import BD3LM

__all__ = ["DEFAULT_CLIP_CANDIDATES", "ClipRange", "bd3_loss_terms", "evaluate_nelbo", "search_clip_range"]


@dataclass(frozen=True)
class ClipRange:
    """Masking rates ``t ~ U[low, high]`` used for training (full range: ``ClipRange(0, 1)``)."""

    low: float = 0.0
    high: float = 1.0


DEFAULT_CLIP_CANDIDATES: tuple[ClipRange, ...] = (
    ClipRange(0.0, 1.0),
    ClipRange(0.1, 1.0),
    ClipRange(0.3, 1.0),
    ClipRange(0.5, 1.0),
    ClipRange(0.3, 0.8),
    ClipRange(0.45, 0.95),
    ClipRange(0.2, 0.7),
    ClipRange(0.7, 1.0),
)


def bd3_loss_terms(
    model: BD3LM,
    x0: Tensor,
    *,
    schedule: DiscreteSchedule | None = None,
    clip: ClipRange = ClipRange(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-token NELBO terms (B, L) in nats for a batch of clean sequences ``x0`` (B, L).

    One time per block, antithetic over all ``B * L / L'`` blocks, uniform on ``[clip.low, clip.high]``.
    ``terms.sum(-1)`` is a one-sample estimate of the sequence's NELBO when ``clip`` is the full range.
    """
    schedule = schedule or LogLinear()
    b, n = x0.shape
    block = model.config.block_size
    t_blocks = sample_times(
        (b, n // block), t_min=clip.low, t_max=clip.high, generator=generator, dtype=torch.float64
    ).to(x0.device)
    t_tok = t_blocks.repeat_interleave(block, dim=1)
    x_t = mask_tokens(x0, schedule.alpha(t_tok), model.mask_id, generator=generator)
    logits = model.forward_train(x_t, x0)
    log_probs = subs_log_probs(logits, x_t, model.mask_id)
    return masked_nelbo_terms(log_probs, x0, x_t, t_tok, schedule, model.mask_id)


@torch.no_grad()
def evaluate_nelbo(
    model: BD3LM,
    batches: Iterable[Tensor],
    *,
    repeats: int = 1,
    schedule: DiscreteSchedule | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """NELBO per token (nats) over ``batches`` of clean sequences, with the full time range [0, 1].

    ``repeats`` independent noise draws per batch lower the Monte-Carlo error. Returns ``nelbo`` (nats/token),
    ``perplexity`` = exp(nelbo), ``stderr`` (of the per-token mean, from the per-sequence spread) and ``tokens``.
    """
    was_training = model.training
    model.eval()
    per_seq: list[Tensor] = []
    n_tokens = 0
    for x0 in batches:
        draws = torch.stack(
            [
                bd3_loss_terms(model, x0, schedule=schedule, generator=generator).sum(-1)
                for _ in range(repeats)
            ]
        )
        per_seq.append(draws.mean(0).double().cpu() / x0.shape[1])
        n_tokens += x0.numel()
    model.train(was_training)
    values = torch.cat(per_seq)
    nelbo = float(values.mean())
    stderr = float(values.std() / values.numel() ** 0.5) if values.numel() > 1 else float("nan")
    return {
        "nelbo": nelbo,
        "perplexity": float(torch.tensor(nelbo).exp()),
        "stderr": stderr,
        "tokens": n_tokens,
    }


@torch.no_grad()
def search_clip_range(
    model: BD3LM,
    batches: Sequence[Tensor],
    *,
    candidates: Sequence[ClipRange] = DEFAULT_CLIP_CANDIDATES,
    schedule: DiscreteSchedule | None = None,
    generator: torch.Generator | None = None,
) -> tuple[ClipRange, dict[ClipRange, float]]:
    """Data-driven clip range: the candidate with the smallest variance of the batch loss (BD3-LM Sec. 4.2).

    For each candidate the training loss (mean of the per-token terms) is computed on every batch of
    ``batches`` (with fresh noise); the variance across batches is the estimator's variance. Returns the best
    range and the variance of every candidate.
    """
    if len(batches) < 2:
        raise ValueError(f"batches: expected at least 2 batches to measure a variance, got {len(batches)}")
    was_training = model.training
    model.eval()
    variances: dict[ClipRange, float] = {}
    for clip in candidates:
        losses = torch.stack(
            [
                bd3_loss_terms(model, x0, schedule=schedule, clip=clip, generator=generator).mean()
                for x0 in batches
            ]
        )
        variances[clip] = float(losses.double().var())
    model.train(was_training)
    best = min(variances, key=variances.__getitem__)
    return best, variances
