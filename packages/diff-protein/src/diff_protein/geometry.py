"""Backbone internal geometry: ideal bond lengths and angles, NeRF atom placement, angles and dihedrals.

Ideal values are Engh & Huber (1991), the set AlphaFold and most backbone models use. Angles are in
radians. Atom order in a backbone array is ``(N, CA, C, O)``: ``atoms: (..., L, 4, 3)`` in angstrom.
Dihedrals follow the IUPAC sign convention (right-handed, alpha helix phi ~ -57 deg, psi ~ -47 deg).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ANGLE_CA_C_N",
    "ANGLE_CA_C_O",
    "ANGLE_C_N_CA",
    "ANGLE_N_CA_C",
    "ATOM_NAMES",
    "BOND_CA_C",
    "BOND_C_N",
    "BOND_C_O",
    "BOND_N_CA",
    "CA_CA_DISTANCE",
    "backbone_dihedrals",
    "backbone_from_dihedrals",
    "bond_angle",
    "dihedral",
    "place_atom",
]

ATOM_NAMES = ("N", "CA", "C", "O")

BOND_N_CA = 1.458
BOND_CA_C = 1.525
BOND_C_N = 1.329
BOND_C_O = 1.231
ANGLE_N_CA_C = math.radians(111.2)
ANGLE_CA_C_N = math.radians(116.2)
ANGLE_C_N_CA = math.radians(121.7)
ANGLE_CA_C_O = math.radians(120.5)
CA_CA_DISTANCE = 3.80
"""Consecutive CA-CA distance for a trans peptide bond (3.80 A; 2.9 A for the rare cis)."""


def place_atom(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    bond: float | torch.Tensor,
    angle: float | torch.Tensor,
    torsion: float | torch.Tensor,
) -> torch.Tensor:
    """NeRF: the atom ``d`` with ``|cd| = bond``, angle ``b-c-d = angle`` and dihedral ``a-b-c-d = torsion``.

    Parsons et al. (2005), "Practical conversion from torsion space to Cartesian space".
    ``a, b, c: (..., 3)``; scalars or tensors broadcastable to ``(...)``. Returns ``(..., 3)``.
    """
    bc = torch.nn.functional.normalize(c - b, dim=-1)
    n = torch.nn.functional.normalize(torch.cross(b - a, bc, dim=-1), dim=-1)
    m = torch.cross(n, bc, dim=-1)
    bond, angle, torsion = (
        torch.as_tensor(v, dtype=a.dtype, device=a.device) for v in (bond, angle, torsion)
    )
    x = -bond * torch.cos(angle)
    y = bond * torch.sin(angle) * torch.cos(torsion)
    z = bond * torch.sin(angle) * torch.sin(torsion)
    return c + x[..., None] * bc + y[..., None] * m + z[..., None] * n


def bond_angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle ``a-b-c`` at ``b`` in [0, pi]. ``(..., 3) x3 -> (...)``."""
    u, v = a - b, c - b
    return torch.atan2(torch.linalg.vector_norm(torch.cross(u, v, dim=-1), dim=-1), (u * v).sum(-1))


def dihedral(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Dihedral angle ``a-b-c-d`` in (-pi, pi], IUPAC sign. ``(..., 3) x4 -> (...)``."""
    b0, b1, b2 = a - b, c - b, d - c
    b1n = torch.nn.functional.normalize(b1, dim=-1)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def backbone_dihedrals(atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``phi, psi, omega`` of a chain, each ``(..., L)``; undefined ends (phi_0, psi_{L-1}, omega_{L-1}) are NaN.

    ``omega_i`` is the peptide bond dihedral ``CA_i - C_i - N_{i+1} - CA_{i+1}``.
    ``atoms: (..., L, >=3, 3)`` with N, CA, C first.
    """
    n, ca, c = atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :]
    pad = torch.full_like(n[..., :1, 0], float("nan"))
    phi = dihedral(c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :], c[..., 1:, :])
    psi = dihedral(n[..., :-1, :], ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])
    omega = dihedral(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :])
    return torch.cat([pad, phi], -1), torch.cat([psi, pad], -1), torch.cat([omega, pad], -1)


def backbone_from_dihedrals(
    phi: torch.Tensor, psi: torch.Tensor, omega: torch.Tensor | None = None
) -> torch.Tensor:
    """Backbone ``(..., L, 4, 3)`` (N, CA, C, O) with ideal bonds and angles and the given dihedrals (NeRF).

    ``phi, psi: (..., L)`` radians (``phi_0`` and ``psi_{L-1}`` are used only for O of the last residue:
    ``psi_{L-1}`` places it; ``phi_0`` is ignored); ``omega: (..., L)`` defaults to pi (trans).
    The first residue is placed in its ideal local frame (CA at the origin, C on +x, N in the xy plane).
    Float64 is recommended: NeRF accumulates round-off along the chain.
    """
    if phi.shape != psi.shape or (omega is not None and omega.shape != phi.shape):
        raise ValueError(
            f"phi, psi, omega: expected equal shapes, got {tuple(phi.shape)}, {tuple(psi.shape)}, "
            f"{None if omega is None else tuple(omega.shape)}"
        )
    if phi.shape[-1] < 1:
        raise ValueError("phi: expected at least one residue")
    if omega is None:
        omega = torch.full_like(phi, math.pi)
    batch, length = phi.shape[:-1], phi.shape[-1]
    opts = {"dtype": phi.dtype, "device": phi.device}
    n = torch.tensor([BOND_N_CA * math.cos(ANGLE_N_CA_C), BOND_N_CA * math.sin(ANGLE_N_CA_C), 0.0], **opts)
    n = n.expand(*batch, 3)
    ca = torch.zeros(*batch, 3, **opts)
    c = torch.tensor([BOND_CA_C, 0.0, 0.0], **opts).expand(*batch, 3)
    residues = []
    for i in range(length):
        o = place_atom(n, ca, c, BOND_C_O, ANGLE_CA_C_O, psi[..., i] + math.pi)
        residues.append(torch.stack([n, ca, c, o], -2))
        if i + 1 == length:
            break
        n_next = place_atom(n, ca, c, BOND_C_N, ANGLE_CA_C_N, psi[..., i])
        ca_next = place_atom(ca, c, n_next, BOND_N_CA, ANGLE_C_N_CA, omega[..., i])
        c_next = place_atom(c, n_next, ca_next, BOND_CA_C, ANGLE_N_CA_C, phi[..., i + 1])
        n, ca, c = n_next, ca_next, c_next
    return torch.stack(residues, -3)
