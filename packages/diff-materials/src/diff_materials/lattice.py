"""A rotation-invariant lattice representation: the symmetric matrix of the polar decomposition.

Every lattice ``L`` (3, 3) (rows a, b, c) factors as ``L = S Q`` with ``Q`` a rotation (or reflection) and
``S = sqrt(L L^T)`` symmetric positive definite (MatterGen diffuses the lattice in this symmetric form,
Zeni et al. 2025, App. B). ``S`` has the Gram matrix of ``L`` (``S S^T = L L^T``), so ``S`` itself is a lattice
of the same crystal (same lengths, angles and fractional coordinates), and ``S`` does not change when the
crystal is rotated: ``L -> L R`` leaves ``L L^T`` unchanged. Its six independent entries
``(S11, S22, S33, S12, S13, S23)`` are what the models see and the diffusion noises, scaled by
``N^(-1/3)`` (``N`` atoms; the volume grows like ``N``) and standardised by the training set's mean and
standard deviation.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lattice_to_sym", "normalise_lattice", "sym_to_lattice", "unnormalise_lattice"]

_IDX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def lattice_to_sym(lattice: Tensor) -> Tensor:
    """``(B, 3, 3)`` lattices (rows are vectors) -> ``(B, 6)`` entries of ``S = sqrt(L L^T)``."""
    gram = lattice.double() @ lattice.double().transpose(-1, -2)
    w, v = torch.linalg.eigh(gram)
    s = v @ torch.diag_embed(w.clamp_min(0.0).sqrt()) @ v.transpose(-1, -2)
    return torch.stack([s[..., i, j] for i, j in _IDX], dim=-1).to(lattice.dtype)


def sym_to_lattice(vec: Tensor) -> Tensor:
    """``(B, 6)`` -> the symmetric ``(B, 3, 3)`` lattice matrix (no check that it is positive definite)."""
    s = vec.new_zeros(*vec.shape[:-1], 3, 3)
    for k, (i, j) in enumerate(_IDX):
        s[..., i, j] = vec[..., k]
        s[..., j, i] = vec[..., k]
    return s


def normalise_lattice(lattice: Tensor, num_atoms: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(B, 3, 3)`` lattices of crystals with ``num_atoms (B,)`` -> the standardised ``(B, 6)`` the model sees."""
    scale = num_atoms.to(lattice.dtype).pow(1.0 / 3.0)[:, None]
    return (lattice_to_sym(lattice) / scale - mean) / std


def unnormalise_lattice(x: Tensor, num_atoms: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Inverse of :func:`normalise_lattice`: ``(B, 6)`` -> symmetric ``(B, 3, 3)`` lattices in angstrom."""
    scale = num_atoms.to(x.dtype).pow(1.0 / 3.0)[:, None]
    return sym_to_lattice((x * std + mean) * scale)
