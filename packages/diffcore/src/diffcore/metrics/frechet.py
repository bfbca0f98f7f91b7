"""Frechet distance between feature sets (the "FD" behind FID, FVD, FAD), for every modality.

The Frechet (2-Wasserstein) distance between Gaussians ``N(mu1, S1)`` and ``N(mu2, S2)`` is
(Dowson & Landau 1982; Heusel et al. 2017, "GANs trained by a two time-scale update rule", Eq. 6)::

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})

We evaluate the last trace in float64 through two symmetric eigen-decompositions (``S1^{1/2}`` and then the
eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``), which equals ``tr(sqrtm(S1 S2))`` but
never produces the complex round-off that ``scipy.linalg.sqrtm`` of the non-symmetric product can, needs no
regularisation of singular covariances (fewer samples than dimensions) and does not depend on scipy's
``sqrtm`` signature (its ``disp`` argument is gone in recent scipy).

Which features is the caller's choice: each modality package measures in the features of its own small
network (an image classifier, a video feature net, an audio instrument classifier, a series encoder).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics"]


def _as_features(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name}: expected a (N, D) feature matrix with N >= 2, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return arr.astype(np.float64)


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features`` ``(N, D)``, in float64."""
    x = _as_features(features, "features")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_statistics(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (module docstring formula).

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: symmetric positive semi-definite covariances ``(D, D)``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"mu1, sigma1, mu2, sigma2: expected shapes (D,), (D, D), (D,), (D, D); got {mu1.shape}, "
            f"{s1.shape}, {mu2.shape}, {s2.shape}"
        )
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum()
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)
    return max(value, 0.0)


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Squared Frechet distance between Gaussians fitted to ``features_a`` ``(N, D)`` and ``features_b`` ``(M, D)``."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a, features_b: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")
    return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
