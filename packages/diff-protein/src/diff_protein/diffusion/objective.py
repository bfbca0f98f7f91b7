"""The training objective of backbone models, for any :class:`~diff_protein.diffusion.base.FrameProcess`.

``BackboneObjective(process)(model, batch, generator) -> (loss, logs)`` follows the
:class:`diffcore.train.Trainer` contract. A batch is ``{"rots": (B, L, 3, 3), "trans": (B, L, 3)
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
from torch import Tensor, nn

from diff_protein.diffusion.base import AuxLossConfig, FrameProcess, aux_losses, centre, masked_mean
from diff_protein.frames import Rigid

__all__ = ["BackboneObjective", "BackboneObjectiveConfig", "collate_frames", "random_motif_mask"]


@dataclass(frozen=True)
class BackboneObjectiveConfig:
    """``min_t``: smallest training time; ``self_cond_prob``; ``motif_prob``: fraction of examples
    trained as motif scaffolding; ``rot_weight``/``trans_weight``: loss weights; ``aux``: auxiliary losses."""

    min_t: float = 0.01
    self_cond_prob: float = 0.5
    motif_prob: float = 0.0
    rot_weight: float = 0.5
    trans_weight: float = 1.0
    aux: AuxLossConfig = field(default_factory=AuxLossConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.min_t < 1:
            raise ValueError(f"min_t: expected a value in [0, 1), got {self.min_t}")
        for name in ("self_cond_prob", "motif_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {getattr(self, name)}")


def collate_frames(items: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Pad dataset items with ``rots (L, 3, 3)`` and ``trans (L, 3)`` to the longest chain.

    Padding is identity rotations and zero translations; ``mask (B, L)`` is True on real residues.
    """
    if not items:
        raise ValueError("items: expected at least one item")
    n = max(item["trans"].shape[0] for item in items)
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
    """Fixed-residue masks ``(B, L)``: 1-3 contiguous spans covering about 5-30 % of each chain."""
    b, _n = mask.shape
    fixed = torch.zeros_like(mask)
    lengths = mask.sum(-1).tolist()
    for i in range(b):
        length = int(lengths[i])
        spans = int(torch.randint(1, 4, (1,), generator=generator))
        total = max(1, int(length * (0.05 + 0.25 * float(torch.rand((), generator=generator)))))
        size = max(1, total // spans)
        for _ in range(spans):
            start = int(torch.randint(0, max(1, length - size + 1), (1,), generator=generator))
            fixed[i, start : start + size] = True
    return fixed & mask


class BackboneObjective:
    """Loss of a frame denoiser under a frame process (see the module docstring)."""

    def __init__(self, process: FrameProcess, config: BackboneObjectiveConfig | None = None) -> None:
        self.process = process
        self.config = config or BackboneObjectiveConfig()

    def __call__(
        self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        rots, trans, mask = batch["rots"], batch["trans"], batch["mask"].bool()
        b = trans.shape[0]
        gen_cpu = generator if generator is None or generator.device.type == "cpu" else None
        fixed = torch.zeros_like(mask)
        if c.motif_prob > 0:
            use = torch.rand(b, generator=gen_cpu) < c.motif_prob
            fixed = random_motif_mask(mask.cpu(), gen_cpu).to(mask.device) & use.to(mask.device)[:, None]
        centre_on = torch.where(fixed.any(-1, keepdim=True), fixed, mask)
        frames0 = Rigid(rots, centre(trans, centre_on) * mask[..., None])
        diffuse = mask & ~fixed
        t = c.min_t + (1 - c.min_t) * torch.rand(
            b, generator=generator, device=trans.device, dtype=trans.dtype
        )
        frames_t = self.process.corrupt(frames0, t, diffuse, generator)
        self_cond = None
        if c.self_cond_prob > 0 and float(torch.rand((), generator=gen_cpu)) < c.self_cond_prob:
            with torch.no_grad():
                self_cond = model(frames_t.rots, frames_t.trans, t, mask=mask, fixed_mask=fixed).trans
        pred = model(frames_t.rots, frames_t.trans, t, mask=mask, fixed_mask=fixed, self_cond=self_cond)
        return self._loss(pred, frames0, frames_t, t, diffuse)

    def _loss(
        self, pred: Rigid, frames0: Rigid, frames_t: Rigid, t: Tensor, diffuse: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        scale = self.process.coordinate_scale
        rot = masked_mean(self.process.rotation_loss(pred, frames0, frames_t, t), diffuse)
        trans_err = ((pred.trans - frames0.trans) * scale).pow(2).sum(-1)
        trans = masked_mean(trans_err, diffuse) * self.process.translation_weight(t)
        bb, dist = aux_losses(pred, frames0, diffuse, c.aux)
        use_aux = (t < c.aux.t_max).to(bb.dtype) * self.process.translation_weight(t)
        aux = c.aux.weight * use_aux * (c.aux.backbone * bb + c.aux.distance * dist)
        loss = (c.rot_weight * rot + c.trans_weight * trans + aux).mean()
        # Tensors, not floats: the Trainer averages them on the device, so no step waits for the GPU to log.
        logs = {
            "rot_loss": rot.detach().mean(),
            "trans_loss": trans.detach().mean(),
            "bb_atom_loss": bb.detach().mean(),
            "dist_loss": dist.detach().mean(),
        }
        return loss, logs
