"""Improved precision and recall of generative models (Kynkaanniemi et al. 2019, arXiv:1904.06991).

Each set of feature vectors approximates its manifold by the union of balls around its points, the radius
of a ball being the distance to the point's k-th nearest neighbour in the same set (Sec. 2, Eq. 1-2):

* precision = fraction of generated samples inside the real manifold (quality),
* recall = fraction of real samples inside the generated manifold (coverage).

The paper uses k = 3 on VGG-16 features; here any feature extractor works (e.g. the penultimate features
of :mod:`diff_image.metrics.classifier`). Distances are computed in float64, in blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PrecisionRecall", "knn_radii", "manifold_membership", "precision_recall"]


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall in ``[0, 1]`` with the neighbourhood size ``k`` used."""

    precision: float
    recall: float
    k: int

    def to_dict(self) -> dict[str, float]:
        """``{"precision", "recall", "k"}`` as plain numbers."""
        return {"precision": self.precision, "recall": self.recall, "k": self.k}


def _as_float64(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a (N, D) feature matrix, got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def knn_radii(features: torch.Tensor, k: int = 3, block: int = 1024) -> torch.Tensor:
    """Distance from each row of ``features`` ``(N, D)`` to its k-th nearest other row: ``(N,)`` float64."""
    x = _as_float64(features, "features")
    if not 1 <= k < len(x):
        raise ValueError(f"k: expected 1 <= k < N = {len(x)}, got {k}")
    out = []
    for start in range(0, len(x), block):
        d = torch.cdist(x[start : start + block], x)
        # Column 0 of the k+1 smallest is the point itself (distance 0).
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def manifold_membership(
    query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, block: int = 1024
) -> torch.Tensor:
    """``(M,)`` bool: is each row of ``query`` ``(M, D)`` within ``radii[j]`` of some ``support[j]`` ``(N, D)``?"""
    q, s = _as_float64(query, "query"), _as_float64(support, "support")
    r = radii.to(torch.float64)
    hits = [(torch.cdist(q[i : i + block], s) <= r[None, :]).any(dim=1) for i in range(0, len(q), block)]
    return torch.cat(hits)


def precision_recall(
    real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, k: int = 3, block: int = 1024
) -> PrecisionRecall:
    """Improved precision and recall of ``fake`` ``(M, D)`` against ``real`` ``(N, D)`` features."""
    r, f = _as_float64(real, "real"), _as_float64(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real, fake: feature sizes differ ({r.shape[1]} vs {f.shape[1]})")
    precision = manifold_membership(f, r, knn_radii(r, k, block), block).double().mean().item()
    recall = manifold_membership(r, f, knn_radii(f, k, block), block).double().mean().item()
    return PrecisionRecall(precision=precision, recall=recall, k=k)
