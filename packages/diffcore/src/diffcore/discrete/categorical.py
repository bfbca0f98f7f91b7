"""Drawing tokens from categorical distributions, with temperature and nucleus (top-p) truncation.

Gumbel-max in float64: MDLM's samplers found that float32 Gumbel noise truncates the tails and lowers the
diversity of samples (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked
models and exploit inaccurate categorical sampling", Sec. 4), so noise is always drawn in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_categorical", "shape_log_probs"]


def shape_log_probs(log_probs: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """Apply temperature then nucleus truncation (Holtzman et al. 2020) to log-probabilities over the last axis.

    log_probs: (..., K). temperature > 0 divides the logits; top_p in (0, 1] keeps the smallest set of
    tokens whose probability mass reaches ``top_p`` (the most likely token is always kept).
    Returns renormalised log-probabilities (``-inf`` where truncated).
    """
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: expected in (0, 1], got {top_p}")
    out = log_probs / temperature if temperature != 1.0 else log_probs
    out = torch.log_softmax(out.float(), dim=-1)
    if top_p < 1.0:
        sorted_lp, order = torch.sort(out, dim=-1, descending=True)
        cum = sorted_lp.exp().cumsum(dim=-1)
        # drop a token when the mass before it already reaches top_p
        drop_sorted = (cum - sorted_lp.exp()) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = torch.log_softmax(out.masked_fill(drop, float("-inf")), dim=-1)
    return out


def sample_categorical(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of ``log_probs`` (..., K) by Gumbel-max in float64; returns (...) int64 indices."""
    u = torch.rand(log_probs.shape, generator=generator, dtype=torch.float64, device=log_probs.device)
    gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
    return torch.argmax(log_probs.double() + gumbel, dim=-1)
