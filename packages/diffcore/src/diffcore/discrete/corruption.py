"""Forward corruption ``q(x_t | x_0)`` of discrete diffusion, token by token and independently.

Absorbing (masked) process: each token stays with probability ``alpha(t)``, else becomes ``mask_id``
(Austin et al. 2021; MDLM Eq. 2). Uniform process: each token stays with probability ``alpha(t)``, else is
redrawn uniformly from the ``vocab_size`` tokens (possibly itself), so
``q(x_t | x_0) = alpha x_0 + (1 - alpha) / K`` (Austin et al. 2021; UDLM, Schiff et al. 2024).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mask_tokens", "uniform_resample", "uniform_transition_probs"]


def _keep_mask(x0: Tensor, keep_prob: Tensor, generator: torch.Generator | None) -> Tensor:
    keep_prob = keep_prob.to(torch.float64)
    while keep_prob.dim() < x0.dim():
        keep_prob = keep_prob.unsqueeze(-1)
    u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
    return u < keep_prob


def mask_tokens(
    x0: Tensor, keep_prob: Tensor, mask_id: int, generator: torch.Generator | None = None
) -> Tensor:
    """Absorbing corruption: keep each token with probability ``keep_prob``, else write ``mask_id``.

    x0: (B, ...) integer tokens. keep_prob: ``alpha(t)``, shape (B,) or broadcastable to ``x0`` from the left
    (one value per sequence, or per block when given as (B, L)). Returns x_t shaped like x0.
    """
    return torch.where(_keep_mask(x0, keep_prob, generator), x0, torch.full_like(x0, mask_id))


def uniform_resample(
    x0: Tensor, keep_prob: Tensor, vocab_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform corruption: keep each token with probability ``keep_prob``, else draw it uniformly from ``vocab_size``.

    x0: (B, ...) integer tokens in [0, vocab_size). keep_prob as in :func:`mask_tokens`.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size: expected >= 2, got {vocab_size}")
    keep = _keep_mask(x0, keep_prob, generator)
    noise = torch.randint(0, vocab_size, x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return torch.where(keep, x0, noise)


def uniform_transition_probs(alpha: Tensor, vocab_size: int) -> tuple[Tensor, Tensor]:
    """``q(x_t = j | x_0 = i) = alpha [i = j] + (1 - alpha) / K``: returns (same-token, other-token) probabilities."""
    other = (1.0 - alpha) / vocab_size
    return alpha + other, other
