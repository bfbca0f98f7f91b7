"""Rigid residue frames (rotation + translation) and the backbone atoms they carry.

One frame per residue, built from N, CA, C by Gram-Schmidt (AlphaFold 2, Jumper et al. 2021,
Suppl. Alg. 21): the origin is CA, the x axis points from CA to C, N lies in the xy plane with
positive y, and z completes a right-handed basis. A frame maps local coordinates to global ones,
``x_global = R @ x_local + t``. Ideal geometry (:mod:`diff_protein.geometry`) fixes N, CA and C in
the local frame, so frames <-> (N, CA, C) is exact both ways on ideal residues; the carbonyl O is
placed in the peptide plane, from the next residue's N or from the psi torsion (FrameDiff, Yim et
al. 2023, Sec. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diff_protein import geometry as geo

__all__ = ["IDEAL_LOCAL_BACKBONE", "Rigid", "backbone_from_frames", "frames_from_backbone"]


def _ideal_local() -> torch.Tensor:
    n = [geo.BOND_N_CA * math.cos(geo.ANGLE_N_CA_C), geo.BOND_N_CA * math.sin(geo.ANGLE_N_CA_C), 0.0]
    return torch.tensor([n, [0.0, 0.0, 0.0], [geo.BOND_CA_C, 0.0, 0.0]], dtype=torch.float64)


IDEAL_LOCAL_BACKBONE = _ideal_local()
"""Ideal N, CA, C in the residue frame: ``(3, 3)`` float64, rows N, CA, C."""


@dataclass(frozen=True)
class Rigid:
    """A batch of rigid transforms ``x -> R x + t``. ``rots: (..., 3, 3)``, ``trans: (..., 3)``."""

    rots: torch.Tensor
    trans: torch.Tensor

    def __post_init__(self) -> None:
        if self.rots.shape[-2:] != (3, 3) or self.trans.shape[-1:] != (3,):
            raise ValueError(
                f"rots, trans: expected (..., 3, 3) and (..., 3), got {tuple(self.rots.shape)}, "
                f"{tuple(self.trans.shape)}"
            )
        if self.rots.shape[:-2] != self.trans.shape[:-1]:
            raise ValueError(
                f"rots, trans: batch shapes differ, {tuple(self.rots.shape[:-2])} vs "
                f"{tuple(self.trans.shape[:-1])}"
            )

    @classmethod
    def identity(
        cls, shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> Rigid:
        """Identity transforms of batch shape ``shape``."""
        rots = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3).clone()
        return cls(rots, torch.zeros(*shape, 3, dtype=dtype, device=device))

    @property
    def shape(self) -> torch.Size:
        """Batch shape ``(...)``."""
        return self.trans.shape[:-1]

    def compose(self, other: Rigid) -> Rigid:
        """``self o other``: apply ``other`` first. ``(R1, t1) o (R2, t2) = (R1 R2, R1 t2 + t1)``."""
        rots = self.rots @ other.rots
        trans = (self.rots @ other.trans[..., None])[..., 0] + self.trans
        return Rigid(rots, trans)

    def invert(self) -> Rigid:
        """The inverse transform ``(R^T, -R^T t)``."""
        rt = self.rots.transpose(-1, -2)
        return Rigid(rt, -(rt @ self.trans[..., None])[..., 0])

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """``R x + t`` for ``points: (..., 3)``, or ``(..., K, 3)`` with K points per frame."""
        if points.dim() == self.trans.dim() + 1:
            return points @ self.rots.transpose(-1, -2) + self.trans[..., None, :]
        return (self.rots @ points[..., None])[..., 0] + self.trans

    def invert_apply(self, points: torch.Tensor) -> torch.Tensor:
        """``R^T (x - t)``: global points into the local frame. Same shapes as :meth:`apply`."""
        return self.invert().apply(points)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Rigid:
        """Cast/move both parts."""
        return Rigid(self.rots.to(device=device, dtype=dtype), self.trans.to(device=device, dtype=dtype))


def frames_from_backbone(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor, eps: float = 1e-8) -> Rigid:
    """Residue frames by Gram-Schmidt on ``C - CA`` and ``N - CA`` (AlphaFold Suppl. Alg. 21).

    ``n, ca, c: (..., 3)`` -> :class:`Rigid` of batch shape ``(...)``. Equivariant: transforming the
    atoms by ``T`` transforms the frames to ``T o frames``.
    """
    v1, v2 = c - ca, n - ca
    e1 = v1 / torch.linalg.vector_norm(v1, dim=-1, keepdim=True).clamp_min(eps)
    u2 = v2 - (e1 * v2).sum(-1, keepdim=True) * e1
    e2 = u2 / torch.linalg.vector_norm(u2, dim=-1, keepdim=True).clamp_min(eps)
    e3 = torch.cross(e1, e2, dim=-1)
    return Rigid(torch.stack([e1, e2, e3], dim=-1), ca)


def _oxygen_from_next_n(ca: torch.Tensor, c: torch.Tensor, n_next: torch.Tensor) -> torch.Tensor:
    """O in the plane (CA_i, C_i, N_{i+1}), at angle CA-C-O from C->CA, on the side away from N_{i+1}."""
    u = torch.nn.functional.normalize(ca - c, dim=-1)
    w = n_next - c
    p = torch.nn.functional.normalize(w - (w * u).sum(-1, keepdim=True) * u, dim=-1)
    d = math.cos(geo.ANGLE_CA_C_O) * u - math.sin(geo.ANGLE_CA_C_O) * p
    return c + geo.BOND_C_O * d


def backbone_from_frames(frames: Rigid, psi: torch.Tensor | None = None) -> torch.Tensor:
    """Ideal backbone atoms ``(..., L, 4, 3)`` (N, CA, C, O) from residue frames of batch shape ``(..., L)``.

    N, CA, C are the ideal local coordinates moved by each frame. O is placed with the ideal C=O bond
    and CA-C-O angle in the peptide plane: with ``psi: (..., L)`` (radians) at dihedral
    ``N-CA-C-O = psi + pi`` for every residue; without it, from the next residue's N, and for the
    last residue from the psi of the residue before it (psi = pi for a chain of one residue).
    """
    local = IDEAL_LOCAL_BACKBONE.to(dtype=frames.trans.dtype, device=frames.trans.device)
    nca_c = frames.apply(local.expand(*frames.shape, 3, 3))
    n, ca, c = nca_c.unbind(-2)
    if psi is not None:
        if psi.shape != frames.shape:
            raise ValueError(f"psi: expected shape {tuple(frames.shape)}, got {tuple(psi.shape)}")
        o = geo.place_atom(n, ca, c, geo.BOND_C_O, geo.ANGLE_CA_C_O, psi + math.pi)
        return torch.stack([n, ca, c, o], -2)
    if frames.shape[-1] < 2:
        last_psi = torch.full(frames.shape, math.pi, dtype=n.dtype, device=n.device)
    else:
        last_psi = geo.dihedral(n[..., -2, :], ca[..., -2, :], c[..., -2, :], n[..., -1, :])[..., None]
    o_inner = _oxygen_from_next_n(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])
    o_last = geo.place_atom(
        n[..., -1:, :], ca[..., -1:, :], c[..., -1:, :], geo.BOND_C_O, geo.ANGLE_CA_C_O, last_psi + math.pi
    )
    return torch.stack([n, ca, c, torch.cat([o_inner, o_last], -2)], -2)
