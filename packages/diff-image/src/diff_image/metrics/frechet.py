"""Frechet distance in diff-image's classifier features, and optional standard Inception FID.

The distance itself is :mod:`diffcore.metrics.frechet` (re-exported here).

**Which features.** :func:`classifier_frechet_distance` uses the penultimate features of this package's
own small classifier (:mod:`diff_image.metrics.classifier`), NOT Inception-v3: numbers are comparable
only between runs that use the same cached classifier, never with published FIDs. For the standard FID,
:func:`inception_fid` wraps torchmetrics with an Inception weights file the user provides locally.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffcore.metrics.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from torch import nn

from diff_image.io import to_uint8

__all__ = [
    "classifier_frechet_distance",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "gaussian_statistics",
    "inception_fid",
]


def classifier_frechet_distance(
    classifier: nn.Module, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 512
) -> float:
    """Frechet distance in the penultimate feature space of ``classifier`` (this package's CNN, not Inception).

    Args:
        classifier: a :class:`diff_image.metrics.classifier.FeatureClassifier`.
        images_a, images_b: ``(N, C, H, W)`` in ``[-1, 1]``, the classifier's input size and channels.
    """
    from diff_image.metrics.classifier import extract_features

    return frechet_distance(
        extract_features(classifier, images_a, batch_size), extract_features(classifier, images_b, batch_size)
    )


def inception_fid(
    real: torch.Tensor,
    fake: torch.Tensor,
    weights_path: str | os.PathLike[str],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> float:
    """Standard FID (Inception-v3 pool features, 2048-d) through ``torchmetrics``, fully offline.

    Args:
        real, fake: ``(N, 3, H, W)`` float images in ``[-1, 1]`` (grey ``C = 1`` is repeated to RGB).
        weights_path: local file with the FID Inception weights (``pt_inception-2015-12-05`` as
            torchmetrics / torch-fidelity expect); nothing is downloaded.
        batch_size: images per forward pass.
        device: where Inception runs.

    Raises:
        ImportError: torchmetrics is not installed (``pip install 'diff-image[fid]'``).
        FileNotFoundError: ``weights_path`` is not a file.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:
        raise ImportError(
            "inception_fid needs torchmetrics with its image extras: pip install 'diff-image[fid]'"
        ) from exc
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights_path: {path} is not a file (a local FID Inception weights file)")
    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path)).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(to_uint8(images[start : start + batch_size])).permute(0, 3, 1, 2)
            if chunk.shape[1] == 1:
                chunk = chunk.repeat(1, 3, 1, 1)
            metric.update(chunk.to(device), real=is_real)
    return float(metric.compute())
