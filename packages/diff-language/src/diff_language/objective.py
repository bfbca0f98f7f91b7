"""The BD3-LM training objective for :class:`diffcore.training.Trainer`, and the clip-range search as a callback.

:class:`BD3Objective` turns a batch of clean windows (B, L) into the mean per-token NELBO with masking rates
drawn from its current clip range (BD3-LM, Arriola et al. 2025, Eq. 8 with Sec. 4's clipped schedule).
:class:`ClipSearch` re-chooses that range every few optimizer steps with
:func:`diff_language.diffusion.search_clip_range` (BD3-LM Sec. 4.2: the range minimising the variance of the
training loss). For ``L' = 1`` the range is fixed to ``[1, 1]``, where the loss is exactly the
autoregressive cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from diffcore.training import Callback
from torch import Tensor

from diff_language.data import random_windows
from diff_language.diffusion import (
    AUTOREGRESSIVE_CLIP,
    DEFAULT_CLIP_CANDIDATES,
    ClipRange,
    bd3_loss_terms,
    search_clip_range,
)

if TYPE_CHECKING:
    from diffcore.training import Trainer

__all__ = ["BD3Objective", "ClipSearch", "initial_clip"]


def initial_clip(block_size: int) -> ClipRange:
    """``[1, 1]`` (exactly AR) for ``L' = 1``, the full range [0, 1] otherwise."""
    return AUTOREGRESSIVE_CLIP if block_size == 1 else ClipRange()


class BD3Objective:
    """``objective(model, batch, generator) -> (loss, logs)``: mean per-token NELBO of ``batch`` (B, L).

    ``clip`` is the masking-rate range of training (mutable: :class:`ClipSearch` updates it). Logged
    extras: the range's ends, so the log shows when the search moved it.
    """

    def __init__(self, clip: ClipRange = ClipRange()) -> None:
        self.clip = clip

    def __call__(
        self, model: torch.nn.Module, batch: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        if batch.dim() != 2:
            raise ValueError(f"batch: expected (B, L) token ids, got shape {tuple(batch.shape)}")
        loss = bd3_loss_terms(model, batch, clip=self.clip, generator=generator).mean()
        return loss, {"clip_low": self.clip.low, "clip_high": self.clip.high}


class ClipSearch(Callback):
    """Every ``every`` optimizer steps, set ``objective.clip`` to the lowest-variance candidate.

    The variance is measured on ``n_batches`` fresh random windows of ``stream`` (rows, length) with the
    model being trained (BD3-LM Sec. 4.2). ``history`` records ``(step, low, high)`` of every choice.
    Does nothing for ``L' = 1`` (its range ``[1, 1]`` already has zero variance).
    """

    def __init__(
        self,
        objective: BD3Objective,
        stream: Tensor,
        *,
        every: int,
        batch_size: int,
        n_batches: int = 8,
        candidates: Sequence[ClipRange] = DEFAULT_CLIP_CANDIDATES,
        seed: int = 0,
    ) -> None:
        if every < 1 or n_batches < 2:
            raise ValueError(f"every, n_batches: expected >= 1 and >= 2, got {every}, {n_batches}")
        self.objective, self.stream = objective, stream
        self.every, self.batch_size, self.n_batches = every, batch_size, n_batches
        self.candidates = tuple(candidates)
        self.seed = seed
        self.history: list[tuple[int, float, float]] = []

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        model = trainer.unwrapped_model
        if model.config.block_size == 1 or step % self.every != 0 or step >= trainer.config.steps:
            return
        device = trainer.accelerator.device
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        seq_len = model.config.seq_len
        batches = [
            random_windows(self.stream, seq_len, self.batch_size, g).to(device) for _ in range(self.n_batches)
        ]
        noise = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + step)
        clip, _ = search_clip_range(model, batches, candidates=self.candidates, generator=noise)
        self.objective.clip = clip
        self.history.append((step, clip.low, clip.high))
