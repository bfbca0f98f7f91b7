"""Classifier-free guidance for discrete denoisers (Ho & Salimans 2022, applied to logits).

For categorical outputs the guided distribution is ``p_w(x0 | x_t, y) ∝ p(x0 | x_t)^(1 - w) p(x0 | x_t, y)^w``
per position, i.e. log-probabilities combined as ``l_u + w (l_c - l_u)`` and renormalised; ``w = 1`` is the
conditional model, ``w = 0`` the unconditional one, ``w > 1`` sharpens towards the condition (as used for
masked diffusion by TaxDiff, Zongying et al. 2024, and by Nisonoff et al. 2024, "Unlocking guidance for
discrete state-space diffusion", Eq. 9).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["guided_log_probs"]


def guided_log_probs(cond_logits: Tensor, uncond_logits: Tensor, scale: float) -> Tensor:
    """Guided log-probabilities ``(..., K)`` from conditional and unconditional logits ``(..., K)``.

    Entries that are ``-inf`` in both inputs (e.g. the mask token under SUBS) stay ``-inf``.
    """
    if cond_logits.shape != uncond_logits.shape:
        raise ValueError(
            f"cond_logits, uncond_logits: expected equal shapes, got {tuple(cond_logits.shape)}, "
            f"{tuple(uncond_logits.shape)}"
        )
    lc = torch.log_softmax(cond_logits.float(), dim=-1)
    lu = torch.log_softmax(uncond_logits.float(), dim=-1)
    both_inf = torch.isinf(lc) & torch.isinf(lu)
    mixed = torch.where(both_inf, lc, lu + scale * (lc - lu))
    mixed = torch.where(torch.isnan(mixed), torch.full_like(mixed, float("-inf")), mixed)
    return torch.log_softmax(mixed, dim=-1)
