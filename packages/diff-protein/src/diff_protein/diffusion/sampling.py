"""Sampling backbones from a frame denoiser: unconditional generation and motif scaffolding (inpainting).

One loop for every :class:`~diff_protein.diffusion.base.FrameProcess`: start from the prior at
``t = 1``, and on a decreasing grid ``1 = t_0 > ... > t_{N-1} = min_t > t_N = 0`` ask the network
for the clean frames (with self-conditioning on its previous CA prediction) and let the process step.
The last step returns the prediction itself. With a motif, its residues hold their given frames at
every step, the rest is generated around them; everything is centred on the motif's CA centroid,
as in training (:class:`~diff_protein.diffusion.objective.BackboneObjective`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diff_protein.diffusion.base import FrameProcess, centre
from diff_protein.frames import Rigid, backbone_from_frames

__all__ = ["Motif", "sample_backbones", "sample_frames", "sampling_grid"]


@dataclass(frozen=True)
class Motif:
    """Residues to keep: ``frames`` of batch shape ``(L,)`` (angstrom; only the fixed positions are
    read) and ``fixed: (L,)`` bool. ``L`` is the length of the generated chains."""

    frames: Rigid
    fixed: Tensor

    def __post_init__(self) -> None:
        if len(self.frames.shape) != 1 or self.fixed.shape != self.frames.shape:
            raise ValueError(
                f"frames, fixed: expected batch shape (L,) and (L,), got {tuple(self.frames.shape)}, "
                f"{tuple(self.fixed.shape)}"
            )
        if not self.fixed.any():
            raise ValueError("fixed: expected at least one fixed residue")


def sampling_grid(steps: int, min_t: float = 0.01) -> list[float]:
    """``steps + 1`` times: ``steps`` uniform from 1 to ``min_t``, then 0."""
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if not 0 < min_t < 1:
        raise ValueError(f"min_t: expected a value in (0, 1), got {min_t}")
    grid = torch.linspace(1.0, min_t, steps, dtype=torch.float64).tolist() if steps > 1 else [1.0]
    return [*grid, 0.0]


@torch.no_grad()
def sample_frames(
    model: nn.Module,
    process: FrameProcess,
    num_samples: int,
    length: int,
    steps: int = 100,
    motif: Motif | None = None,
    self_condition: bool = True,
    min_t: float = 0.01,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Rigid:
    """Generate ``num_samples`` chains of ``length`` residues: frames ``Rigid (num_samples, length)``.

    ``model(rots, trans, t, mask=, fixed_mask=, self_cond=) -> Rigid`` predicts clean frames.
    """
    if num_samples < 1 or length < 1:
        raise ValueError(f"num_samples, length: expected >= 1, got {num_samples}, {length}")
    if motif is not None and motif.fixed.shape[0] != length:
        raise ValueError(f"motif: expected {length} residues, got {motif.fixed.shape[0]}")
    dtype = next(model.parameters()).dtype
    shape = (num_samples, length)
    frames = process.prior(shape, generator, dtype, device)
    mask = torch.ones(shape, dtype=torch.bool, device=device)
    fixed = torch.zeros_like(mask)
    if motif is not None:
        fixed = motif.fixed.to(device).bool()[None].expand(shape)
        m = motif.frames.to(dtype, device)
        m_trans = centre(m.trans[None], motif.fixed.to(device)[None])[0]
        frames = Rigid(
            torch.where(fixed[..., None, None], m.rots.expand(*shape, 3, 3), frames.rots),
            torch.where(fixed[..., None], m_trans.expand(*shape, 3), frames.trans),
        )
    diffuse = mask & ~fixed
    self_cond = None
    grid = sampling_grid(steps, min_t)
    for t, s in itertools.pairwise(grid):
        tt = torch.full((num_samples,), t, dtype=dtype, device=device)
        pred = model(frames.rots, frames.trans, tt, mask=mask, fixed_mask=fixed, self_cond=self_cond)
        if self_condition:
            self_cond = pred.trans
        frames = process.step(frames, pred, t, s, diffuse, generator)
    return frames


def sample_backbones(
    model: nn.Module, process: FrameProcess, num_samples: int, length: int, **kwargs
) -> Tensor:
    """Like :func:`sample_frames`, returning ideal backbone atoms ``(num_samples, length, 4, 3)`` (N, CA, C, O)."""
    return backbone_from_frames(sample_frames(model, process, num_samples, length, **kwargs))
