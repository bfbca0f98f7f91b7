"""The SUBS parameterisation of masked diffusion (MDLM, Sahoo et al. 2024, Sec. 3.2).

A network's logits over the vocabulary become a denoiser ``p(x_0 | x_t)`` that (1) never predicts the
mask token ("zero masking probabilities") and (2) copies unmasked tokens ("carry-over unmasking"), since
under the absorbing process an unmasked token of ``x_t`` is exactly the clean token.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["subs_log_probs"]


def subs_log_probs(logits: Tensor, x_t: Tensor, mask_id: int) -> Tensor:
    """SUBS log-probabilities of ``x_0``.

    logits: (B, L, K) raw network outputs, K including the mask token. x_t: (B, L) tokens, ``mask_id`` where
    masked. Returns (B, L, K) float32 log-probs: ``-inf`` on the mask token everywhere; at unmasked
    positions 0 on ``x_t`` and ``-inf`` elsewhere.
    """
    if logits.shape[:-1] != x_t.shape:
        raise ValueError(f"logits: expected shape {tuple(x_t.shape)} + (K,), got {tuple(logits.shape)}")
    logits = logits.float().clone()
    logits[..., mask_id] = float("-inf")
    log_probs = torch.log_softmax(logits, dim=-1)
    unmasked = x_t != mask_id
    # unconditionally (no ``unmasked.any()`` test): a data-dependent branch would cost a host sync per call
    carry = torch.full_like(log_probs, float("-inf"))
    carry.scatter_(-1, x_t.unsqueeze(-1), 0.0)
    return torch.where(unmasked.unsqueeze(-1), carry, log_probs)
