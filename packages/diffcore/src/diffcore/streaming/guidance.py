"""Guidance inside a stream batch: none, classifier-free guidance, and residual classifier-free guidance (RCFG).

Every rule is an affine combination at a fixed state ``x_t`` of a negative (``x0_n, eps_n``) and the
conditional estimate (``x0_c, eps_c``) with weights ``1 - w`` and ``w``, so ``x_t = alpha x0 + sigma eps``
keeps holding for the guided pair (Ho & Salimans 2022, Eq. 6, written for both estimates):

    eps = eps_n + w (eps_c - eps_n),        x0 = x0_n + w (x0_c - x0_n).

- ``none``: the conditional estimate alone (one network row per frame and step).
- ``full``: classifier-free guidance, the negative from an unconditional network row (two rows per frame and
  step).
- ``self``: RCFG with a self-negative (Kodaira et al. 2023, Sec. 3.3, Eq. 8-9): the negative is the *virtual
  residual noise* ``eps_n = (x_t - alpha_t x_ref) / sigma_t``, the noise that would take the frame's reference
  ``x_ref`` (its input latent for image-to-image, 0 for text-to-image) to the current state; so
  ``x0_n = x_ref``. No extra network row.
- ``initialize``: RCFG with a one-time negative (ibid.): the unconditional row is computed once per frame, at
  its first step; its ``x0`` becomes the frame's reference, and the later steps use the virtual residual
  against it (one extra row per frame, not per step).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

__all__ = ["GUIDANCE_MODES", "GuidanceMode", "guided", "virtual_residual"]

GuidanceMode = Literal["none", "full", "self", "initialize"]
GUIDANCE_MODES: tuple[str, ...] = ("none", "full", "self", "initialize")


def virtual_residual(x: Tensor, x_ref: Tensor, alpha: Tensor | float, sigma: Tensor | float) -> Tensor:
    """RCFG's virtual residual noise (Kodaira et al. 2023, Eq. 8): ``(x_t - alpha_t x_ref) / sigma_t``.

    ``x``, ``x_ref``: ``(..., C, H, W)`` states and references; ``alpha``, ``sigma``: the path coefficients at
    ``x``'s time, broadcastable (``sigma > 0``: every stream step is at ``t > 0``)."""
    return (x - alpha * x_ref) / sigma


def guided(x0_c: Tensor, eps_c: Tensor, x0_n: Tensor, eps_n: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """``(x0_n + w (x0_c - x0_n), eps_n + w (eps_c - eps_n))`` with ``w = scale`` (Ho & Salimans 2022, Eq. 6)."""
    return x0_n + scale * (x0_c - x0_n), eps_n + scale * (eps_c - eps_n)
