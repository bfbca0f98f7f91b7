"""The per-Gaussian feature layout the generative models read and write.

One Gaussian is a row of ``FEATURES = 14`` floats, in this order::

    means (3) | quat (4, wxyz) | log_scales (3) | opacity_logit (1) | colour (3, the SH degree-0 coefficient)

the layout of :meth:`diff_3d.gaussians.Gaussians.to_vector` at SH degree 0, so ``g.with_sh_degree(0).to_vector()``
is one object's features and ``Gaussians.from_vector(row)`` its inverse.

A splat set of a fixed budget ``N`` is a tensor ``(N, 14)`` and a batch of them ``(B, N, 14)``. Only the
degree-0 (view-independent) spherical-harmonic coefficient is generated; higher degrees are zero when a set is
turned back into :class:`~diff_3d.gaussians.Gaussians` (:func:`diff_3d.pipeline.data.features_to_gaussians`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "COLOUR",
    "FEATURES",
    "LOG_SCALES",
    "MEANS",
    "OPACITY",
    "QUAT",
    "check_features",
    "normalise_quats",
]

MEANS = slice(0, 3)
QUAT = slice(3, 7)
LOG_SCALES = slice(7, 10)
OPACITY = slice(10, 11)
COLOUR = slice(11, 14)
FEATURES = 14


def check_features(x: Tensor, name: str = "features") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is a float tensor ``(B, N, 14)``."""
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != FEATURES or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"{name}: expected a float tensor (B, N, {FEATURES}) of Gaussian features, got {shape}"
        )


def normalise_quats(q: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)``; a zero quaternion becomes the identity ``(1, 0, 0, 0)``."""
    norm = q.norm(dim=-1, keepdim=True)
    identity = torch.zeros_like(q)
    identity[..., 0] = 1.0
    return torch.where(norm > 1e-12, q / norm.clamp_min(1e-12), identity)
