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

from diff_protein.diffusion.base import FrameProcess, centre, far_pairs
from diff_protein.frames import Rigid, backbone_from_frames

__all__ = ["ClashGuidance", "Motif", "sample_backbones", "sample_frames", "sampling_grid"]


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


@dataclass(frozen=True)
class ClashGuidance:
    """Steer sampling away from steric clashes (an auxiliary potential, as RFdiffusion's).

    While ``t >= t_min``, the network's predicted CA positions are pushed apart wherever two residues at
    least ``min_separation`` apart in the chain are closer than ``radius`` angstrom: ``iterations`` steps of
    ``x_i += step_size * sum_j relu(radius - d_ij) (x_i - x_j) / d_ij`` (gradient descent on the overlap
    energy ``1/2 sum_{i<j} relu(radius - d_ij)^2`` with step ``step_size``); rotations are left alone. The
    process then steps towards the moved prediction. Below ``t_min`` the network alone denoises, so the
    final bond geometry is the model's, not the potential's. Fixed (motif) residues never move. The defaults
    are the best measured setting that leaves the network the last tenth of the time (docs/diff-protein.md).
    """

    radius: float = 5.0
    min_separation: int = 3
    step_size: float = 0.5
    iterations: int = 5
    t_min: float = 0.1

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.step_size <= 0 or not 0 <= self.t_min < 1:
            raise ValueError(
                f"radius > 0, step_size > 0, 0 <= t_min < 1 expected; got {self.radius}, {self.step_size}, "
                f"{self.t_min}"
            )
        if self.min_separation < 1 or self.iterations < 1:
            raise ValueError(
                f"min_separation, iterations: expected >= 1, got {self.min_separation}, {self.iterations}"
            )

    def push_apart(self, ca: Tensor, movable: Tensor, present: Tensor | None = None) -> Tensor:
        """``ca (B, L, 3)`` with clashing residues moved apart. ``movable (B, L)`` bool: residues that may
        move (generated ones); ``present (B, L)`` bool: real residues (default all), the only ones that push
        (a fixed motif residue pushes a movable one; padding pushes nothing)."""
        far = far_pairs(ca.shape[1], self.min_separation, ca.device)
        present = torch.ones_like(movable) if present is None else present
        real = present[:, :, None] & present[:, None, :]
        x = ca
        for _ in range(self.iterations):
            diff = x[:, :, None] - x[:, None, :]  # (B, L, L, 3): x_i - x_j
            d = diff.norm(dim=-1).clamp_min(1e-6)
            overlap = torch.relu(self.radius - d) * (far & real)
            x = x + self.step_size * movable[..., None] * (overlap[..., None] * diff / d[..., None]).sum(2)
        return x


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
    clash_guidance: ClashGuidance | None = None,
    start: Rigid | None = None,
    t_start: float = 1.0,
    mask: Tensor | None = None,
) -> Rigid:
    """Generate ``num_samples`` chains of ``length`` residues: frames ``Rigid (num_samples, length)``.

    ``model(rots, trans, t, mask=, fixed_mask=, self_cond=) -> Rigid`` predicts clean frames;
    ``clash_guidance`` optionally steers the predictions away from steric clashes (:class:`ClashGuidance`).
    ``start``, ``t_start``: begin from these frames ``(num_samples, length)`` at time ``t_start`` instead of
    a prior draw at ``t = 1`` (partial denoising: corrupt chains to ``t_start`` with ``process.corrupt``, then
    sample the rest of the sampler's grid). ``mask (num_samples, length)`` bool: True on real residues,
    padding at the end of each row, so chains of several lengths share one batch (padding holds identity
    rotations and zero translations and is returned as such); default all real.
    """
    if num_samples < 1 or length < 1:
        raise ValueError(f"num_samples, length: expected >= 1, got {num_samples}, {length}")
    if not 0 < t_start <= 1:
        raise ValueError(f"t_start: expected a time in (0, 1], got {t_start}")
    if start is not None and tuple(start.shape) != (num_samples, length):
        raise ValueError(f"start: expected frames of shape {(num_samples, length)}, got {tuple(start.shape)}")
    if motif is not None and motif.fixed.shape[0] != length:
        raise ValueError(f"motif: expected {length} residues, got {motif.fixed.shape[0]}")
    dtype = next(model.parameters()).dtype
    shape = (num_samples, length)
    frames = process.prior(shape, generator, dtype, device) if start is None else start.to(dtype, device)
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        mask = mask.to(device).bool()
        if tuple(mask.shape) != shape or not mask[:, 0].all():
            raise ValueError(
                f"mask: expected {shape} with at least one real residue per row, got {tuple(mask.shape)}"
            )
        if motif is not None and not mask.all():
            raise ValueError("mask: motif scaffolding needs chains of the motif's length (an all-True mask)")
        eye = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3)
        frames = Rigid(
            torch.where(mask[..., None, None], frames.rots, eye),
            centre(frames.trans, mask) * mask[..., None],
        )
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
    if t_start < 1:
        grid = [t_start, *(t for t in grid if t < t_start)]
    for t, s in itertools.pairwise(grid):
        tt = torch.full((num_samples,), t, dtype=dtype, device=device)
        pred = model(frames.rots, frames.trans, tt, mask=mask, fixed_mask=fixed, self_cond=self_cond)
        if clash_guidance is not None and t >= clash_guidance.t_min:
            pred = Rigid(pred.rots, clash_guidance.push_apart(pred.trans, diffuse, mask))
        if self_condition:
            self_cond = pred.trans
        frames = process.step(frames, pred, t, s, diffuse, generator)
    return frames


def sample_backbones(
    model: nn.Module, process: FrameProcess, num_samples: int, length: int, **kwargs
) -> Tensor:
    """Like :func:`sample_frames`, returning ideal backbone atoms ``(num_samples, length, 4, 3)`` (N, CA, C, O)."""
    return backbone_from_frames(sample_frames(model, process, num_samples, length, **kwargs))
