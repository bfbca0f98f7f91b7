"""Exponential moving average of the weights, on ``torch.optim.swa_utils.AveragedModel``.

After the ``n``-th update the average is ``ema_n = decay * ema_{n-1} + (1 - decay) * theta_n``
(Polyak & Juditsky 1992; used for diffusion by Ho et al. 2020, Sec. 4, and Karras et al. 2022).
The first update copies the weights. During the first ``warmup_steps`` optimizer steps the decay
is 0, so the average follows the weights exactly and starts averaging from trained weights, not
from the random initialisation. Buffers (e.g. normalisation statistics) are averaged too.

The update applies torch's averaging function (``get_ema_multi_avg_fn``, one ``_foreach_lerp_`` per
device and dtype) to the :class:`AveragedModel`'s tensors, as ``AveragedModel.update_parameters`` does,
but counts the updates on the host: ``update_parameters`` reads its ``n_averaged`` buffer (on the GPU)
with Python ``if``s, two device syncs per update, which stall a host-bound training loop every step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """The EMA copy of a model, updated once per ``update_every`` optimizer steps.

    Args:
        model: the (unwrapped) model being trained; it is deep-copied, its weights are not shared.
        decay: the EMA decay in [0, 1).
        warmup_steps: optimizer steps during which the decay is 0 (the average copies the weights).
        update_every: update every this many optimizer steps (the decay applies per update).
    """

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int = 0, update_every: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a number in [0, 1), got {decay!r}")
        if update_every < 1:
            raise ValueError(f"update_every: expected an integer >= 1, got {update_every!r}")
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.update_every = update_every
        self._copy_fn = get_ema_multi_avg_fn(0.0)
        self._decay_fn = get_ema_multi_avg_fn(decay)
        # The copy keeps requires_grad off: the average is never trained.
        self.averaged = AveragedModel(copy.deepcopy(model), multi_avg_fn=self._decay_fn, use_buffers=True)
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

    def due(self, step: int) -> bool:
        """Whether the update after optimizer step ``step`` (1-based, as counted by the Trainer) is due."""
        return step % self.update_every == 0

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in ``model``'s current weights after 1-based optimizer step ``step``."""
        average_fn = self._copy_fn if step <= self.warmup_steps else self._decay_fn
        count = self._count()
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for averaged, current in zip(_tensors(self.averaged.module), _tensors(model), strict=True):
            mine, theirs = groups.setdefault((averaged.device, averaged.dtype), ([], []))
            mine.append(averaged.detach())
            theirs.append(current.detach().to(averaged.device))
        for mine, theirs in groups.values():
            if count == 0:  # the first update copies, as AveragedModel's does
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
