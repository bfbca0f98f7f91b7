"""Exponential moving average of the weights, on ``torch.optim.swa_utils.AveragedModel``.

The average starts as a copy of the model it is built from (for the Trainer: the weights training
starts from) and its ``k``-th update is

    ema_k = d_k * ema_{k-1} + (1 - d_k) * theta_k

(Polyak & Juditsky 1992; used for diffusion by Ho et al. 2020, Sec. 4, and Karras et al. 2022). The
decay ``d_k`` is :func:`update_decay`: ``0`` (a copy of the weights) during the first ``warmup_steps``
optimizer steps, then, with ``warmup``, ``min(decay, (1 + n) / (10 + n))`` at the ``n``-th averaging
update (LDM's ``LitEma``, Rombach et al. 2022, ``ldm/modules/ema.py``; diffusers' ``EMAModel`` default),
else ``decay``. The share of the starting weights left in the average after ``N`` updates is therefore
exactly ``prod_k d_k`` (:func:`initial_weight_fraction`): without warm-up, 300 updates at 0.999 leave
``0.999**300 = 74%`` of a random initialisation, which samples noise; with it, 2 updates leave 4.5%.
Buffers (e.g. normalisation statistics) are averaged too.

The update applies torch's averaging function (``get_ema_multi_avg_fn``, one ``_foreach_lerp_`` per
device and dtype) to the :class:`AveragedModel`'s tensors, but counts the updates on the host:
``AveragedModel.update_parameters`` reads its ``n_averaged`` buffer (on the GPU) with Python ``if``s, two
device syncs per update, which stall a host-bound training loop every step. The decays are Python floats
computed from the host count, so an update never reads the GPU.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

INITIAL_WEIGHT_WARNING = 0.05
"""A run that ends with more than this share of its starting weights in the EMA warns."""


def update_decay(update: int, decay: float, *, warmup: bool = True, copy_updates: int = 0) -> float:
    """The decay ``d_k`` of the 1-based ``update``-th EMA update (module doc).

    Args:
        update: which update, counted from 1.
        decay: the EMA decay in [0, 1) (the largest decay with ``warmup``).
        warmup: grow the decay as ``min(decay, (1 + n) / (10 + n))``, ``n`` counting the averaging updates
            after the copies from 1 (LDM's ``LitEma``).
        copy_updates: the first this many updates copy the weights (decay 0).
    """
    if update < 1:
        raise ValueError(f"update: expected an integer >= 1, got {update!r}")
    if update <= copy_updates:
        return 0.0
    if not warmup:
        return decay
    n = update - copy_updates
    return min(decay, (1 + n) / (10 + n))


def initial_weight_fraction(
    num_updates: int, decay: float, *, warmup: bool = True, copy_updates: int = 0
) -> float:
    """The share of the starting weights still in the average after ``num_updates`` updates:
    ``prod_{k=1..num_updates} update_decay(k, ...)`` (1 before any update)."""
    if num_updates < 0:
        raise ValueError(f"num_updates: expected an integer >= 0, got {num_updates!r}")
    if copy_updates > 0 and num_updates > 0:
        return 0.0
    if not warmup:
        return decay**num_updates
    return math.prod(update_decay(k, decay, warmup=True) for k in range(1, num_updates + 1))


class EMA:
    """The EMA copy of a model, updated once per ``update_every`` optimizer steps.

    Args:
        model: the (unwrapped) model being trained; it is deep-copied (the average starts from its
            current weights), its weights are not shared.
        decay: the EMA decay in [0, 1) (the largest decay with ``warmup``).
        warmup_steps: optimizer steps during which the decay is 0 (the average copies the weights):
            the first ``warmup_steps // update_every`` updates.
        update_every: update every this many optimizer steps (the decay applies per update).
        warmup: grow the decay with the number of updates (module doc); ``False``: always ``decay``.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float,
        warmup_steps: int = 0,
        update_every: int = 1,
        *,
        warmup: bool = True,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a number in [0, 1), got {decay!r}")
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every: expected an integer >= 1, got {update_every!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected an integer >= 0, got {warmup_steps!r}")
        self.decay = decay
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        self.update_every = update_every
        # The copy keeps requires_grad off: the average is never trained.
        self.averaged = AveragedModel(
            copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.requires_grad_(False)
        # averaged.n_averaged mirrored on the host, so updates never sync; None after a load (re-read once).
        self._host_updates: int | None = 0
        self.averaged.register_load_state_dict_post_hook(self._forget_count)

    @property
    def module(self) -> nn.Module:
        """The averaged model itself (same class as the trained one), for sampling and saving."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        """How many times the average has been updated."""
        return self._count()

    @property
    def copy_updates(self) -> int:
        """How many of the first updates copy the weights (those at steps ``<= warmup_steps``)."""
        return self.warmup_steps // self.update_every

    def decay_of(self, update: int) -> float:
        """The decay of the 1-based ``update``-th update, :func:`update_decay` with this EMA's settings."""
        return update_decay(update, self.decay, warmup=self.warmup, copy_updates=self.copy_updates)

    @property
    def initial_weight_fraction(self) -> float:
        """The share of the weights the average started from that it still holds (the product of the
        decays used so far; :func:`initial_weight_fraction`)."""
        return initial_weight_fraction(
            self._count(), self.decay, warmup=self.warmup, copy_updates=self.copy_updates
        )

    def undertrained_warning(self) -> str | None:
        """A one-line warning when the average still holds more than :data:`INITIAL_WEIGHT_WARNING` of
        its starting weights, else ``None``."""
        share = self.initial_weight_fraction
        if share <= INITIAL_WEIGHT_WARNING:
            return None
        remedy = (
            "train longer or lower ema_decay" if self.warmup else "set ema_warmup=True, or lower ema_decay"
        )
        return (
            f"ema: after {self._count()} updates the EMA weights are still {share:.1%} the weights training "
            f"started from (ema_decay={self.decay}, ema_warmup={self.warmup}); {remedy}, or use the trained "
            "model, not the EMA one"
        )

    def due(self, step: int) -> bool:
        """Whether the update after optimizer step ``step`` (1-based, as counted by the Trainer) is due."""
        return step % self.update_every == 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (the next update; its decay is :meth:`decay_of`)."""
        count = self._count()
        decay = self.decay_of(count + 1)
        average_fn = get_ema_multi_avg_fn(decay)
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for averaged, current in zip(_tensors(self.averaged.module), _tensors(model), strict=True):
            mine, theirs = groups.setdefault((averaged.device, averaged.dtype), ([], []))
            mine.append(averaged.detach())
            theirs.append(current.detach().to(averaged.device))
        for mine, theirs in groups.values():
            if decay == 0.0:  # exactly the weights (a lerp with weight 1 may round)
                torch._foreach_copy_(mine, theirs)
            else:
                average_fn(mine, theirs, None)  # (EMA functions ignore the update count)
        self.averaged.n_averaged += 1
        self._host_updates = count + 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights and buffers (keys prefixed ``module.``) and ``n_averaged``."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict` (strict: every key must match)."""
        self.averaged.load_state_dict(state, strict=True)

    def _count(self) -> int:
        if self._host_updates is None:
            self._host_updates = int(self.averaged.n_averaged.item())
        return self._host_updates

    def _forget_count(self, module: nn.Module, incompatible_keys: object) -> None:
        """After any ``load_state_dict`` into the average (ours, a checkpoint loader's), re-read the count."""
        self._host_updates = None


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    """Parameters then buffers, in ``AveragedModel``'s order (``use_buffers=True``)."""
    yield from module.parameters()
    yield from module.buffers()
