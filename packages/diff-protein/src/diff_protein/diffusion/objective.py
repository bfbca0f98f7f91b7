"""The training objective of backbone models, for any :class:`~diff_protein.diffusion.base.FrameProcess`.

``BackboneObjective(process)(model, batch, generator) -> (loss, logs)`` follows the
:class:`diffcore.training.Trainer` contract. A batch is ``{"rots": (B, L, 3, 3), "trans": (B, L, 3)
angstrom, "mask": (B, L) bool}`` (see :func:`collate_frames`). Per example:

1. ``t ~ U[min_t, 1]``; with probability ``motif_prob`` a motif (1-3 contiguous spans, 5-30 % of the
   residues) is fixed and the structure is centred on the motif's CA centroid (FrameDiff / FrameFlow
   motif scaffolding), else it is centred on all CAs;
2. the process corrupts the generated residues;
3. with probability ``self_cond_prob`` a first pass without gradient gives the self-conditioning CA
   positions (Chen et al. 2022, "Analog Bits", Sec. 3; FrameDiff App. I.1);
4. loss = rotation loss + translation x0 MSE (nm^2, weighted by the process) + FrameDiff's auxiliary
   backbone-atom and local-distance losses for ``t < aux.t_max`` (Yim et al. 2023, Eq. 9-10), weighted
   by the process's translation weight too (FrameFlow normalises them by ``max(t, t_clip)^2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffcore.nn import GraphedCall  # the public name (the module may move to diffcore.kernels)
from torch import Tensor, nn

from diff_protein.diffusion.base import (
    AuxLossConfig,
    FrameProcess,
    aux_losses,
    centre,
    clash_loss,
    masked_mean,
)
from diff_protein.frames import Rigid

__all__ = ["BackboneObjective", "BackboneObjectiveConfig", "collate_frames", "random_motif_mask"]


@dataclass(frozen=True)
class BackboneObjectiveConfig:
    """``min_t``, ``max_t``: training times are drawn uniformly from ``[min_t, max_t]`` (``t = 1`` is the
    prior; a ``max_t`` below 1 or a ``min_t`` well above 0 focuses training, e.g. a fine-tuning of the
    high-noise steps where the topology is chosen); ``self_cond_prob``; ``motif_prob``: fraction of examples
    trained as motif scaffolding; ``rot_weight``/``trans_weight``: loss weights; ``aux``: auxiliary losses;
    ``cuda_graphs``: on CUDA, replay the denoiser's forward and backward from CUDA graphs
    (:class:`diffcore.nn.GraphedCall`; batches must then share one shape: ``collate_frames(pad_to=...)``
    and whole batches only), which removes most of a step's kernel-launch overhead."""

    min_t: float = 0.01
    max_t: float = 1.0
    self_cond_prob: float = 0.5
    motif_prob: float = 0.0
    rot_weight: float = 0.5
    trans_weight: float = 1.0
    aux: AuxLossConfig = field(default_factory=AuxLossConfig)
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.min_t < self.max_t <= 1:
            raise ValueError(
                f"min_t, max_t: expected 0 <= min_t < max_t <= 1, got {self.min_t}, {self.max_t}"
            )
        for name in ("self_cond_prob", "motif_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {getattr(self, name)}")


def collate_frames(items: Sequence[dict[str, Any]], pad_to: int | None = None) -> dict[str, Tensor]:
    """Pad dataset items with ``rots (L, 3, 3)`` and ``trans (L, 3)`` to the longest chain, or to ``pad_to``.

    Padding is identity rotations and zero translations; ``mask (B, L)`` is True on real residues.
    ``pad_to`` gives every batch one shape (for CUDA graphs); a longer chain is an error.
    """
    if not items:
        raise ValueError("items: expected at least one item")
    n = max(item["trans"].shape[0] for item in items)
    if pad_to is not None:
        if n > pad_to:
            raise ValueError(f"pad_to: {pad_to} is shorter than a chain of the batch ({n} residues)")
        n = pad_to
    b = len(items)
    rots = torch.eye(3).expand(b, n, 3, 3).clone()
    trans = torch.zeros(b, n, 3)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, item in enumerate(items):
        m = item["trans"].shape[0]
        rots[i, :m] = item["rots"].float()
        trans[i, :m] = item["trans"].float()
        mask[i, :m] = True
    return {"rots": rots, "trans": trans, "mask": mask}


def random_motif_mask(mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fixed-residue masks ``(B, L)``: 1-3 contiguous spans covering about 5-30 % of each chain.

    ``mask (B, L)`` is True on real residues, which come first in each row (padding at the end, as
    :func:`collate_frames` writes). Computed on ``mask``'s device without reading anything back to the host
    (no synchronisation in a training step); ``generator`` must live on that device, or be ``None``.
    """
    b, n = mask.shape
    dev = mask.device
    lengths = mask.sum(-1)
    u = torch.rand(b, 5, generator=generator, device=dev, dtype=torch.float64)
    spans = 1 + (u[:, 0] * 3).long().clamp(max=2)  # 1, 2 or 3 spans
    total = (lengths * (0.05 + 0.25 * u[:, 1])).long().clamp_min(1)
    size = (total // spans).clamp_min(1)
    room = (lengths - size + 1).clamp_min(1)  # span starts lie in [0, length - size]
    starts = (u[:, 2:] * room[:, None]).long().minimum(room[:, None] - 1)  # (B, 3)
    pos = torch.arange(n, device=dev)
    inside = (pos >= starts[..., None]) & (pos < (starts + size[:, None])[..., None])  # (B, 3, L)
    used = torch.arange(3, device=dev) < spans[:, None]
    return (inside & used[..., None]).any(1) & mask


class BackboneObjective:
    """Loss of a frame denoiser under a frame process (see the module docstring)."""

    def __init__(self, process: FrameProcess, config: BackboneObjectiveConfig | None = None) -> None:
        self.process = process
        self.config = config or BackboneObjectiveConfig()
        self._denoise = GraphedCall(_denoise) if self.config.cuda_graphs else _denoise

    def __call__(
        self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        rots, trans, mask = batch["rots"], batch["trans"], batch["mask"].bool()
        b = trans.shape[0]
        gen = generator if generator is None or generator.device.type == trans.device.type else None
        fixed = torch.zeros_like(mask)
        if c.motif_prob > 0:
            use = torch.rand(b, generator=gen, device=trans.device) < c.motif_prob
            fixed = random_motif_mask(mask, gen) & use[:, None]
        centre_on = torch.where(fixed.any(-1, keepdim=True), fixed, mask)
        frames0 = Rigid(rots, centre(trans, centre_on) * mask[..., None])
        diffuse = mask & ~fixed
        t = c.min_t + (c.max_t - c.min_t) * torch.rand(
            b, generator=gen, device=trans.device, dtype=trans.dtype
        )
        frames_t = self.process.corrupt(frames0, t, diffuse, gen)
        # One coin per batch, drawn on the host so that no step waits for the device.
        coin_gen = generator if generator is not None and generator.device.type == "cpu" else None
        self_cond = torch.zeros_like(frames_t.trans)
        if c.self_cond_prob > 0 and float(torch.rand((), generator=coin_gen)) < c.self_cond_prob:
            with torch.no_grad():
                self_cond = self._denoise(model, frames_t.rots, frames_t.trans, t, mask, fixed, self_cond)[1]
        pred = Rigid(*self._denoise(model, frames_t.rots, frames_t.trans, t, mask, fixed, self_cond))
        return self._loss(pred, frames0, frames_t, t, diffuse, mask)

    def _loss(
        self, pred: Rigid, frames0: Rigid, frames_t: Rigid, t: Tensor, diffuse: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        scale = self.process.coordinate_scale
        rot = masked_mean(self.process.rotation_loss(pred, frames0, frames_t, t), diffuse)
        trans_err = ((pred.trans - frames0.trans) * scale).pow(2).sum(-1)
        trans = masked_mean(trans_err, diffuse) * self.process.translation_weight(t)
        bb, dist = aux_losses(pred, frames0, diffuse, c.aux)
        use_aux = (t < c.aux.t_max).to(bb.dtype) * self.process.translation_weight(t)
        aux = c.aux.backbone * bb + c.aux.distance * dist
        clash = None
        if c.aux.clash > 0:
            clash = clash_loss(pred.trans, frames0.trans, mask, c.aux.clash_radius)
            aux = aux + c.aux.clash * clash
        aux = c.aux.weight * use_aux * aux
        loss = (c.rot_weight * rot + c.trans_weight * trans + aux).mean()
        # Tensors, not floats: the Trainer averages them on the device, so no step waits for the GPU to log.
        logs = {
            "rot_loss": rot.detach().mean(),
            "trans_loss": trans.detach().mean(),
            "bb_atom_loss": bb.detach().mean(),
            "dist_loss": dist.detach().mean(),
        }
        if clash is not None:
            logs["clash_loss"] = clash.detach().mean()
        return loss, logs


def _denoise(
    model: nn.Module, rots: Tensor, trans: Tensor, t: Tensor, mask: Tensor, fixed: Tensor, self_cond: Tensor
) -> tuple[Tensor, Tensor]:
    """The denoiser's clean-frame prediction as tensors (the form :class:`GraphedCall` replays)."""
    out = model(rots, trans, t, mask=mask, fixed_mask=fixed, self_cond=self_cond)
    return out.rots, out.trans
