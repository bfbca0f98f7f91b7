"""Masked (absorbing) diffusion over amino-acid sequences with taxonomy labels (TaxDiff, Zongying et al. 2024).

Everything discrete comes from :mod:`diffcore.discrete`: the schedule ``alpha(t)``, the corruption, SUBS,
the continuous-time NELBO (MDLM, Sahoo et al. 2024, Eq. 10) and the ancestral sampler. This module adds
label dropout for classifier-free guidance, padding of variable-length batches, and a guided denoiser
that runs the conditional and the null-label branch in one batched forward.

Tokens: 0..19 amino acids, 20 = mask (:mod:`diff_protein.data.sequences`). Time ``t`` in [0, 1], 0 = data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffcore.discrete import (
    DiscreteSchedule,
    LogLinear,
    mask_tokens,
    masked_ancestral_sample,
    masked_nelbo_terms,
    subs_log_probs,
    time_grid,
)
from diffcore.guidance.discrete import guided_log_probs
from diffcore.nn.embeddings import drop_labels
from torch import Tensor, nn

from diff_protein.data.sequences import MASK_TOKEN

__all__ = ["GuidedSequenceDenoiser", "SequenceObjective", "collate_sequences", "sample_sequences"]


def collate_sequences(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad ``{"tokens": (L,), "label": ()}`` items to the longest: ``tokens (B, L)`` (mask-padded),
    ``label (B,)``, ``mask (B, L)`` True on real residues."""
    if not items:
        raise ValueError("items: expected at least one item")
    n = max(len(item["tokens"]) for item in items)
    tokens = torch.full((len(items), n), MASK_TOKEN, dtype=torch.long)
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    for i, item in enumerate(items):
        tokens[i, : len(item["tokens"])] = item["tokens"]
        mask[i, : len(item["tokens"])] = True
    return {"tokens": tokens, "label": torch.stack([item["label"] for item in items]), "mask": mask}


def _antithetic_times(
    n: int, generator: torch.Generator | None, device: torch.device, eps: float = 1e-5
) -> Tensor:
    """``n`` stratified times ``(u + i / n) mod 1`` on ``[eps, 1]`` (MDLM's low-discrepancy sampler), drawn
    on ``device`` so a CUDA generator works (:func:`diffcore.discrete.sample_times` draws on the CPU)."""
    u = torch.rand((), generator=generator, device=device, dtype=torch.float64)
    t = (u + torch.arange(n, device=device, dtype=torch.float64) / n) % 1.0
    return (eps + (1 - eps) * t).float()


@dataclass
class SequenceObjective:
    """NELBO of masked diffusion per residue (nats), with CFG label dropout ``p_uncond``.

    ``objective(model, batch, generator) -> (loss, logs)`` for :class:`diffcore.training.Trainer`;
    ``model(x_t, t, y=, mask=) -> logits``. Residues that were unknown in the data (tokenised to the
    mask) and padding are excluded from the loss.
    """

    schedule: DiscreteSchedule | None = None
    p_uncond: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.p_uncond <= 1:
            raise ValueError(f"p_uncond: expected a probability in [0, 1], got {self.p_uncond}")
        self.schedule = self.schedule or LogLinear()

    def __call__(
        self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        x0, y, mask = batch["tokens"], batch["label"], batch["mask"].bool()
        valid = mask & (x0 != MASK_TOKEN)
        t = _antithetic_times(x0.shape[0], generator, x0.device)
        x_t = mask_tokens(x0, self.schedule.alpha(t.double()), MASK_TOKEN, generator)
        x_t = torch.where(mask, x_t, torch.full_like(x_t, MASK_TOKEN))
        y = drop_labels(y, self.p_uncond, model.null_class, generator)
        log_probs = subs_log_probs(model(x_t, t, y=y, mask=mask), x_t, MASK_TOKEN)
        safe_x0 = torch.where(valid, x0, torch.zeros_like(x0))
        terms = masked_nelbo_terms(log_probs, safe_x0, x_t, t, self.schedule, MASK_TOKEN)
        loss = (terms * valid).sum() / valid.sum().clamp_min(1)
        return loss, {"nelbo_per_residue": float(loss.detach())}


class GuidedSequenceDenoiser:
    """A :data:`diffcore.discrete.DiscreteDenoiser` for labels ``y: (B,)`` with guidance ``scale``.

    ``scale = 1``: the conditional model alone; ``scale = 0``: unconditional; ``> 1``: CFG
    (:func:`diffcore.guidance.discrete.guided_log_probs`). Both branches run in one batched forward.
    """

    def __init__(self, model: nn.Module, y: Tensor | None, scale: float = 1.0) -> None:
        self.model, self.y, self.scale = model, y, scale

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        if self.y is None or self.scale == 0.0:
            return subs_log_probs(self.model(x_t, t, y=None), x_t, MASK_TOKEN)
        if self.scale == 1.0:
            return subs_log_probs(self.model(x_t, t, y=self.y), x_t, MASK_TOKEN)
        null = torch.full_like(self.y, self.model.null_class)
        logits = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), y=torch.cat([self.y, null]))
        cond, uncond = logits.chunk(2)
        cond = subs_log_probs(cond, x_t, MASK_TOKEN)
        uncond = subs_log_probs(uncond, x_t, MASK_TOKEN)
        return guided_log_probs(cond, uncond, self.scale)


@torch.no_grad()
def sample_sequences(
    model: nn.Module,
    labels: Tensor | None,
    length: int,
    num_samples: int | None = None,
    steps: int = 64,
    guidance_scale: float = 1.0,
    schedule: DiscreteSchedule | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Token sequences ``(B, length)`` by MDLM ancestral sampling from all-mask, one per label of
    ``labels: (B,)`` (or ``num_samples`` unconditional ones when ``labels`` is None)."""
    if labels is None and num_samples is None:
        raise ValueError("labels, num_samples: give the labels to condition on or a number of samples")
    b = len(labels) if labels is not None else int(num_samples)
    device = next(model.parameters()).device
    x = torch.full((b, length), MASK_TOKEN, dtype=torch.long, device=device)
    denoiser = GuidedSequenceDenoiser(model, None if labels is None else labels.to(device), guidance_scale)
    return masked_ancestral_sample(
        denoiser,
        x,
        time_grid(steps),
        schedule=schedule or LogLinear(),
        mask_id=MASK_TOKEN,
        temperature=temperature,
        cache_predictions=False,
        generator=generator,
    )
