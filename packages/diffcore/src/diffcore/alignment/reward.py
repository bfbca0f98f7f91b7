"""Reward models learned from preference pairs (Bradley-Terry), on the features of any backbone.

The Bradley-Terry model (Bradley & Terry 1952; as in ImageReward, Xu et al. 2023, and PickScore, Kirstain et
al. 2023) says ``P(x^w > x^l | c) = sigmoid(r(x^w, c) - r(x^l, c))``; fitting ``r`` by maximum likelihood is the
loss ``-log sigmoid(r_w - r_l)`` averaged over pairs (:func:`bradley_terry_loss`).

:class:`RewardModel` is a small MLP head on a feature extractor the caller passes,
``features(x, **cond) -> (B, F)``: an image encoder with a caption embedding, a pretrained network's pooled
activations, or a diffusion backbone's. The extractor is frozen (``train_features=False``; features computed
without gradients) or trained with the head. :class:`BradleyTerryObjective` trains it on pair batches
(:class:`~diffcore.alignment.pairs.PreferencePairs`) with the Trainer; :func:`pair_accuracy` scores held-out
pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcore.alignment.dpo import split_pair_batch
from diffcore.alignment.pairs import PreferencePairs

__all__ = ["BradleyTerryObjective", "RewardModel", "bradley_terry_loss", "pair_accuracy"]


def bradley_terry_loss(reward_w: Tensor, reward_l: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean_b -log sigmoid(r_w - r_l)`` for rewards ``(B,)``; logs the pair ``accuracy`` (``r_w > r_l``)."""
    if reward_w.shape != reward_l.shape or reward_w.ndim != 1:
        raise ValueError(
            f"reward_w, reward_l: expected two (B,) tensors, got {tuple(reward_w.shape)}, {tuple(reward_l.shape)}"
        )
    margin = reward_w - reward_l
    return -F.logsigmoid(margin).mean(), {"accuracy": (margin > 0).float().mean().detach()}


class RewardModel(nn.Module):
    """``r(x, **cond) = head(features(x, **cond))``, a scalar per sample.

    Args:
        features: ``features(x, **cond) -> (B, feature_dim)``, any callable (an ``nn.Module`` is registered as a
            sub-module and saved with the head).
        feature_dim: the width of the features.
        hidden: widths of the head's hidden layers (SiLU between them); ``()`` is a linear head.
        train_features: train the extractor with the head; False computes the features without gradients.
    """

    def __init__(
        self,
        features: Callable[..., Tensor],
        feature_dim: int,
        hidden: tuple[int, ...] = (128,),
        train_features: bool = False,
    ) -> None:
        super().__init__()
        if not callable(features):
            raise TypeError("features: expected a callable features(x, **cond) -> (B, F)")
        if feature_dim < 1:
            raise ValueError(f"feature_dim: expected >= 1, got {feature_dim}")
        self.features = features
        self.feature_dim, self.train_features = int(feature_dim), bool(train_features)
        widths = [self.feature_dim, *hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.SiLU())
        self.head = nn.Sequential(*layers)
        if isinstance(features, nn.Module) and not train_features:
            features.requires_grad_(False)

    def forward(self, x: Tensor, **cond: Any) -> Tensor:
        """The reward of each sample ``(B,)`` for ``x`` ``(B, ...)``."""
        if self.train_features:
            f = self.features(x, **cond)
        else:
            with torch.no_grad():
                f = self.features(x, **cond)
        if f.shape != (x.shape[0], self.feature_dim):
            raise ValueError(
                f"features: expected shape ({x.shape[0]}, {self.feature_dim}), got {tuple(f.shape)}"
            )
        return self.head(f).reshape(-1)


def _both(value: Any) -> Any:
    return torch.cat([value, value]) if isinstance(value, Tensor) else value


@dataclass
class BradleyTerryObjective:
    """The Bradley-Terry loss on pair batches, for the Trainer (``objective(model, batch, generator)``); the model
    is a reward ``r(x, **cond) -> (B,)`` and sees winners and losers in one batch."""

    def __call__(
        self, model: Callable[..., Tensor], batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        winner, loser, cond = split_pair_batch(batch)
        b = winner.shape[0]
        r = model(torch.cat([winner, loser]), **{k: _both(v) for k, v in cond.items()})
        if r.shape != (2 * b,):
            raise ValueError(f"model: expected rewards of shape ({2 * b},), got {tuple(r.shape)}")
        return bradley_terry_loss(r[:b], r[b:])


@torch.no_grad()
def pair_accuracy(
    reward: Callable[..., Tensor],
    pairs: PreferencePairs,
    batch_size: int = 256,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> float:
    """The fraction of ``pairs`` whose winner gets the higher reward (ties count half).

    ``prepare`` maps each pair batch first (e.g. prompts -> token ids)."""
    right, total = 0.0, 0
    for batch in pairs.loader(batch_size, shuffle=False):
        batch = prepare(batch) if prepare is not None else batch
        winner, loser, cond = split_pair_batch(batch)
        rw, rl = reward(winner, **cond), reward(loser, **cond)
        right += float((rw > rl).sum()) + 0.5 * float((rw == rl).sum())
        total += len(rw)
    return right / total
