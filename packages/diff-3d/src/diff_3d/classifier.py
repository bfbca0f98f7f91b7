"""The render classifier of :func:`diff_3d.pipeline.evaluate`: class adherence and a render Frechet distance.

A small CNN (:class:`diff_image.metrics.classifier.FeatureClassifier`, the 2D prior package's evaluation network) is
trained here on renders of true objects of the procedural classes (``views`` views each, ``size`` x ``size``); a
generated object is assigned the class of its views' mean logits, and the Frechet distance between the CNN's
penultimate features of generated and reference renders measures how alike the pictures are (Heusel et al. 2017's
FID with this CNN in place of Inception, so comparable only within this package).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RenderClassifier", "to_network_input", "train_render_classifier"]


def to_network_input(images: Tensor) -> Tensor:
    """Renders ``(..., H, W, 3)`` in ``[0, 1]`` -> the CNN's input ``(M, 3, H, W)`` in ``[-1, 1]``."""
    return images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2).float() * 2 - 1


@dataclass
class RenderClassifier:
    """A trained classifier of renders, with its held-out accuracy (``val_accuracy``, on true renders)."""

    network: torch.nn.Module
    num_classes: int
    val_accuracy: float

    @torch.no_grad()
    def logits(self, views: Tensor) -> Tensor:
        """Per-object logits ``(B, num_classes)`` of renders ``(B, V, H, W, 3)``: the views' mean."""
        b, v = views.shape[:2]
        dev = next(self.network.parameters()).device
        out = self.network(to_network_input(views).to(dev)).float().cpu()
        return out.reshape(b, v, -1).mean(1)

    @torch.no_grad()
    def features(self, views: Tensor) -> Tensor:
        """Penultimate features ``(B * V, D)`` of renders ``(B, V, H, W, 3)``."""
        from diff_image.metrics.classifier import extract_features

        return extract_features(self.network, to_network_input(views)).float().cpu()  # type: ignore[arg-type]


def train_render_classifier(
    views: Tensor,
    labels: Tensor,
    num_classes: int,
    steps: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> RenderClassifier:
    """Train on renders ``(M, V, H, W, 3)`` of true objects with ``labels`` ``(M,)`` for about ``steps`` optimizer
    steps (batches of 64 views); a fifth of the objects is held out for ``val_accuracy``."""
    from diff_image.metrics.classifier import (
        ClassifierConfig,
        ClassifierTraining,
        classifier_accuracy,
        train_classifier,
    )

    if views.ndim != 5 or views.shape[0] != labels.shape[0]:
        raise ValueError(
            f"views: expected (M, V, H, W, 3) renders of the M labelled objects, got {tuple(views.shape)}"
        )
    m, v = views.shape[:2]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(m, generator=g)
    n_val = max(1, m // 5) if m >= 5 else 0
    val, fit = order[:n_val], order[n_val:]
    images, y = to_network_input(views[fit]), labels[fit].repeat_interleave(v)
    batch = 64
    epochs = max(1, round(steps * batch / max(1, images.shape[0])))
    net = train_classifier(
        images, y, ClassifierConfig(in_channels=3, num_classes=num_classes),
        ClassifierTraining(epochs=epochs, batch_size=batch, seed=seed), device=device,
    )  # fmt: skip
    acc = float("nan")
    if n_val:
        acc = float(
            classifier_accuracy(
                net, to_network_input(views[val]).to(device), labels[val].repeat_interleave(v)
            )
        )
    return RenderClassifier(net.eval(), num_classes, acc)
