"""The BD3-LM training objective: masked diffusion inside blocks, one noise level per block (Arriola et al. 2025).

Loss (BD3-LM Eq. 8, MDLM Eq. 10 per block): for each block ``b`` draw ``t_b``, mask the block's tokens with
probability ``1 - alpha(t_b)``, and weight the cross-entropy of its masked tokens by ``-alpha'(t_b)/(1 - alpha(t_b))``
given the noisy block and the clean blocks before it. Times are antithetic over the batch and blocks
(:func:`bd3_loss_terms`).

Clipped schedules (BD3-LM Sec. 4): training may draw ``t`` from ``[beta, omega]``; :func:`search_clip_range`
picks the range that minimises the variance of the training loss. Evaluation
(:func:`diff_language.metrics.estimate_nelbo`) always uses the full range [0, 1], so the likelihood bound stays
unbiased.

For :class:`diffcore.training.Trainer`: :class:`BD3Objective` turns a batch of clean windows (B, L) into the mean
per-token loss with masking rates from its current clip range, and the :class:`ClipSearch` callback re-chooses
that range every few optimizer steps (BD3-LM Sec. 4.2). For ``L' = 1`` the range is fixed to ``[1, 1]``, where
the loss is exactly the autoregressive cross-entropy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffcore.discrete import (
    DiscreteSchedule,
    LogLinear,
    mask_tokens,
    masked_nelbo_terms,
    subs_log_probs,
)
from diffcore.io import write_json
from diffcore.rng import make_generator
from diffcore.training import Callback
from torch import Tensor

from diff_language.data.windows import random_windows
from diff_language.models import BD3LM

if TYPE_CHECKING:
    from diffcore.training import Trainer

__all__ = [
    "AUTOREGRESSIVE_CLIP",
    "DEFAULT_CLIP_CANDIDATES",
    "BD3Objective",
    "ClipRange",
    "ClipSearch",
    "bd3_loss_terms",
    "block_times",
    "initial_clip",
    "search_clip_range",
]


@dataclass(frozen=True)
class ClipRange:
    """Masking rates ``t ~ U[low, high]`` used for training (full range: ``ClipRange(0, 1)``)."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"clip: expected 0 <= low <= high <= 1, got [{self.low}, {self.high}]")


DEFAULT_CLIP_CANDIDATES: tuple[ClipRange, ...] = (
    ClipRange(0.0, 1.0),
    ClipRange(0.1, 1.0),
    ClipRange(0.3, 1.0),
    ClipRange(0.5, 1.0),
    ClipRange(0.3, 0.8),
    ClipRange(0.45, 0.95),
    ClipRange(0.2, 0.7),
    ClipRange(0.7, 1.0),
)

AUTOREGRESSIVE_CLIP = ClipRange(1.0, 1.0)
"""For ``L' = 1`` every token masked with weight 1: exactly the autoregressive loss, zero time variance."""

_T_EPS = 1e-5  # keeps t off 0, where the weight -alpha'/(1 - alpha) is infinite


def block_times(
    shape: tuple[int, int],
    clip: ClipRange = ClipRange(),
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    offset: Tensor | None = None,
) -> Tensor:
    """Antithetic times (B, n_blocks) uniform on ``[clip.low, clip.high]`` (float64, on ``device``).

    The ``n = B * n_blocks`` times are ``(u + i / n) mod 1`` for one uniform ``u``, randomly permuted
    (Kingma et al. 2021, Sec. 3.4), drawn from ``generator`` on ``device`` without a host sync.
    ``offset`` (same shape, in [0, 1)) replaces that draw: each block's uniform is then ``offset`` itself,
    which :mod:`diff_language.metrics` uses to stratify repeated draws per block.
    """
    b, n_blocks = shape
    if offset is None:
        n = b * n_blocks
        u = torch.rand((), generator=generator, device=device, dtype=torch.float64)
        u = (u + torch.arange(n, device=device, dtype=torch.float64) / n) % 1.0
        u = u[torch.randperm(n, generator=generator, device=device)].reshape(b, n_blocks)
    else:
        u = offset.to(device=device, dtype=torch.float64)
    lo = max(clip.low, _T_EPS)
    hi = max(clip.high, lo)
    return lo + (hi - lo) * u


def bd3_loss_terms(
    model: BD3LM,
    x0: Tensor,
    *,
    schedule: DiscreteSchedule | None = None,
    clip: ClipRange = ClipRange(),
    generator: torch.Generator | None = None,
    offset: Tensor | None = None,
) -> Tensor:
    """Per-token NELBO terms (B, L) in nats for a batch of clean sequences ``x0`` (B, L).

    One time per block, antithetic over all ``B * L / L'`` blocks, uniform on ``[clip.low, clip.high]``
    (or set by ``offset`` (B, L / L'), see :func:`block_times`). ``generator`` lives on ``x0``'s device.
    ``terms.sum(-1)`` is a one-sample estimate of the sequence's NELBO when ``clip`` is the full range.
    """
    schedule = schedule or LogLinear()
    b, n = x0.shape
    config = _unwrap(model).config
    block, mask_id = config.block_size, config.mask_id
    t_blocks = block_times((b, n // block), clip, generator=generator, device=x0.device, offset=offset)
    t_tok = t_blocks.repeat_interleave(block, dim=1)
    x_t = mask_tokens(x0, schedule.alpha(t_tok), mask_id, generator=generator)
    logits = model(x_t, x0=x0)
    log_probs = subs_log_probs(logits, x_t, mask_id)
    return masked_nelbo_terms(log_probs, x0, x_t, t_tok, schedule, mask_id)


def _unwrap(model: torch.nn.Module) -> BD3LM:
    """The BD3LM inside a DDP / accelerate wrapper (``.module``), or the model itself."""
    return getattr(model, "module", model)


@torch.no_grad()
def search_clip_range(
    model: BD3LM,
    batches: Sequence[Tensor],
    *,
    candidates: Sequence[ClipRange] = DEFAULT_CLIP_CANDIDATES,
    schedule: DiscreteSchedule | None = None,
    generator: torch.Generator | None = None,
) -> tuple[ClipRange, dict[ClipRange, float]]:
    """Data-driven clip range: the candidate with the smallest variance of the batch loss (BD3-LM Sec. 4.2).

    For each candidate the training loss (mean of the per-token terms) is computed on every batch of
    ``batches`` (with fresh noise); the variance across batches is the estimator's variance. Returns the best
    range and the variance of every candidate.
    """
    if len(batches) < 2:
        raise ValueError(f"batches: expected at least 2 batches to measure a variance, got {len(batches)}")
    was_training = model.training
    model.eval()
    variances: dict[ClipRange, float] = {}
    for clip in candidates:
        losses = torch.stack(
            [
                bd3_loss_terms(model, x0, schedule=schedule, clip=clip, generator=generator).mean()
                for x0 in batches
            ]
        )
        variances[clip] = float(losses.double().var())
    model.train(was_training)
    best = min(variances, key=variances.__getitem__)
    return best, variances


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
    Does nothing for ``L' = 1`` (its range ``[1, 1]`` already has zero variance). The current range and the
    history are written into every checkpoint (``clip_search.json``) and restored when a run resumes, so a
    run continued across calls trains on the range it had chosen.
    """

    STATE_FILE = "clip_search.json"

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

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """Save the current range and the history beside the checkpoint's weights."""
        if trainer.accelerator.is_main_process:
            clip = self.objective.clip
            write_json({"clip": [clip.low, clip.high], "history": self.history}, path / self.STATE_FILE)

    def on_train_start(self, trainer: Trainer) -> None:
        """On a resumed run, restore the range and history saved with the checkpoint it resumed from."""
        if trainer.last_checkpoint is None or trainer.step == 0:
            return
        state_file = trainer.last_checkpoint / self.STATE_FILE
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            self.objective.clip = ClipRange(*state["clip"])
            self.history = [tuple(h) for h in state["history"]]

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        model = trainer.unwrapped_model
        if model.config.block_size == 1 or step % self.every != 0 or step >= trainer.config.steps:
            return
        device = trainer.accelerator.device
        g = make_generator(self.seed * 1_000_003 + step)
        seq_len = model.config.seq_len
        batches = [
            random_windows(self.stream, seq_len, self.batch_size, g).to(device) for _ in range(self.n_batches)
        ]
        noise = make_generator(self.seed * 1_000_003 + step, device)
        clip, _ = search_clip_range(model, batches, candidates=self.candidates, generator=noise)
        self.objective.clip = clip
        self.history.append((step, clip.low, clip.high))
