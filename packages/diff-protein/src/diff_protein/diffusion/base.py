"""What the two SE(3) processes share: the protocol a sampler sees, masks, centring and the losses.

A *frame process* corrupts residue frames ``Rigid`` of batch shape ``(B, L)`` (translations in
angstrom) from ``t = 0`` (data) to ``t = 1`` (noise), draws the prior, and steps backwards given a
network's prediction of the clean frames. Both :class:`~diff_protein.diffusion.FrameDiffusion`
(FrameDiff, Yim et al. 2023) and :class:`~diff_protein.diffusion.FrameFlow` (Yim et al. 2023b)
implement it, so one network (:mod:`diff_protein.models.ipa`) and one sampling loop serve both.

``diffuse_mask: (B, L)`` bool marks the residues that are generated; the others (a motif) keep their
clean frames at every time, which is how motif scaffolding works as inpainting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from diff_protein.frames import IDEAL_LOCAL_BACKBONE, Rigid

__all__ = [
    "AuxLossConfig",
    "FrameProcess",
    "aux_losses",
    "backbone_atoms",
    "centre",
    "check_batch",
    "clash_loss",
    "far_pairs",
    "local_distance_loss",
    "masked_mean",
]


class FrameProcess(Protocol):
    """The interface the sampler and the training objective use (see the module docstring)."""

    coordinate_scale: float

    def corrupt(
        self, frames0: Rigid, t: Tensor, diffuse_mask: Tensor, generator: torch.Generator | None = None
    ) -> Rigid:
        """Sample ``frames_t ~ p_t(. | frames0)``; residues outside ``diffuse_mask`` stay clean."""
        ...

    def prior(
        self,
        shape: tuple[int, int],
        generator: torch.Generator | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> Rigid:
        """Frames at ``t = 1``, batch shape ``(B, L)``."""
        ...

    def step(
        self,
        frames_t: Rigid,
        pred0: Rigid,
        t: float,
        s: float,
        diffuse_mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> Rigid:
        """One reverse step from ``t`` to ``s < t`` given the predicted clean frames ``pred0``."""
        ...

    def rotation_loss(self, pred0: Rigid, frames0: Rigid, frames_t: Rigid, t: Tensor) -> Tensor:
        """Per-residue rotation loss ``(B, L)``."""
        ...

    def translation_weight(self, t: Tensor) -> Tensor:
        """Per-example weight ``(B,)`` of the translation x0 loss."""
        ...


def check_batch(frames: Rigid, t: Tensor) -> None:
    """Raise unless ``frames`` has batch shape ``(B, L)`` and ``t`` is ``(B,)`` in [0, 1]."""
    if len(frames.shape) != 2:
        raise ValueError(f"frames: expected batch shape (B, L), got {tuple(frames.shape)}")
    if t.shape != frames.shape[:1]:
        raise ValueError(f"t: expected shape ({frames.shape[0]},), got {tuple(t.shape)}")
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t: expected times in [0, 1] (0 = data, 1 = noise)")


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] = -1) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only entries where ``mask`` is True (0 where none are)."""
    m = mask.to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def centre(x: Tensor, mask: Tensor) -> Tensor:
    """``x: (B, L, 3)`` minus its mean over the residues where ``mask: (B, L)`` is True."""
    m = mask.to(x.dtype)[..., None]
    mean = (x * m).sum(-2, keepdim=True) / m.sum(-2, keepdim=True).clamp_min(1.0)
    return x - mean


def backbone_atoms(frames: Rigid) -> Tensor:
    """Ideal N, CA, C of each frame: ``(..., L, 3, 3)`` in the frames' units."""
    local = IDEAL_LOCAL_BACKBONE.to(dtype=frames.trans.dtype, device=frames.trans.device)
    return frames.apply(local.expand(*frames.shape, 3, 3))


@dataclass(frozen=True)
class AuxLossConfig:
    """FrameDiff's auxiliary losses (Yim et al. 2023, Sec. 4.2, Eq. 9-10), applied for ``t < t_max``.

    ``backbone``: weight of the MSE of the N, CA, C positions (in nm^2); ``distance``: weight of the MSE
    of pairwise backbone-atom distances below ``cutoff`` angstrom (local geometry, which sets the
    CA-CA bond lengths); ``clash``: weight of :func:`clash_loss` (off by default; a steric-violation term in
    the manner of AlphaFold 2's, Suppl. 1.9.11, on CA pairs, with ``clash_radius``); ``weight`` multiplies all. The objective also multiplies them by the
    process's translation weight (1 for FrameDiff; ``1 / max(t, t_clip)^2`` for FrameFlow, whose
    auxiliary losses are normalised like its vector-field loss and applied for ``t < 0.75``).
    """

    weight: float = 1.0
    t_max: float = 0.25
    cutoff: float = 6.0
    backbone: float = 1.0
    distance: float = 1.0
    clash: float = 0.0
    clash_radius: float = 4.0

    def __post_init__(self) -> None:
        if self.weight < 0 or not 0 <= self.t_max <= 1 or self.cutoff <= 0:
            raise ValueError(
                f"weight, t_max, cutoff: expected >= 0, in [0, 1], > 0; got {self.weight}, {self.t_max}, {self.cutoff}"
            )
        if self.clash < 0 or self.clash_radius <= 0:
            raise ValueError(
                f"clash >= 0 and clash_radius > 0 expected; got {self.clash}, {self.clash_radius}"
            )


def local_distance_loss(pred: Tensor, true: Tensor, mask: Tensor, cutoff: float) -> Tensor:
    """Per-example MSE ``(B,)`` of distances between atoms ``(B, N, 3)`` closer than ``cutoff`` in ``true``.

    FrameDiff Eq. 10 (nm^2: distances are divided by 10).
    """
    d_true = torch.cdist(true, true)
    d_pred = torch.cdist(pred, pred)
    pair = mask[:, :, None] & mask[:, None, :] & (d_true < cutoff)
    pair &= ~torch.eye(true.shape[1], dtype=torch.bool, device=true.device)
    err = ((d_pred - d_true) / 10.0) ** 2
    return (err * pair).sum((1, 2)) / pair.sum((1, 2)).clamp_min(1)


def far_pairs(length: int, min_separation: int, device: torch.device | str = "cpu") -> Tensor:
    """``(L, L)`` bool: residue pairs at least ``min_separation`` apart in the chain, ``|i - j| >= min_separation``."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() >= min_separation


def clash_loss(
    ca_pred: Tensor, ca_true: Tensor, mask: Tensor, radius: float, min_separation: int = 3
) -> Tensor:
    """Per-example steric violation ``(B,)``: CA pairs at least ``min_separation`` apart in the chain that the
    prediction puts closer than ``min(radius, true distance)``.

    ``sum_{i<j} relu(min(radius, d_true) - d_pred)^2`` over real pairs (nm^2), divided by the number of real
    residues. It is zero on the data itself and never pulls a pair apart beyond its true distance, so unlike
    the local-distance loss (pairs close in the data) it reaches the long-range pairs a sample packs through
    each other. ``ca_pred, ca_true: (B, L, 3)`` angstrom, ``mask (B, L)`` bool.
    """
    d_pred = torch.cdist(ca_pred, ca_pred)
    d_true = torch.cdist(ca_true, ca_true)
    far = far_pairs(mask.shape[1], min_separation, mask.device).triu()  # i < j only
    pair = mask[:, :, None] & mask[:, None, :] & far
    violation = torch.relu(d_true.clamp(max=radius) - d_pred) / 10.0
    return (violation.pow(2) * pair).sum((1, 2)) / mask.sum(-1).clamp_min(1)


def aux_losses(pred0: Rigid, frames0: Rigid, mask: Tensor, config: AuxLossConfig) -> tuple[Tensor, Tensor]:
    """Per-example backbone-atom MSE and local-distance MSE ``(B,)``, both in nm^2."""
    b, length = mask.shape
    atoms_pred = backbone_atoms(pred0).reshape(b, length * 3, 3)
    atoms_true = backbone_atoms(frames0).reshape(b, length * 3, 3)
    atom_mask = mask.repeat_interleave(3, dim=1)
    bb = masked_mean(((atoms_pred - atoms_true) / 10.0).pow(2).sum(-1), atom_mask)
    dist = local_distance_loss(atoms_pred, atoms_true, atom_mask, config.cutoff)
    return bb, dist
