"""The orbit-averaged (Rao-Blackwellised) score target of the fractional coordinates.

DiffCSP's target for atom ``i`` is the wrapped-normal score ``d/dx_i log p(x_t | x_0)`` of the one training crystal
``x_0`` the noise came from. A translation-invariant, permutation-equivariant network cannot tell ``x_0`` from
its translates or from ``x_0`` with two same-type atoms swapped, so what it learns is the posterior mean of
that target over the whole orbit ``{g x_0}`` (the data are invariant under every ``g``). At high noise the
orbit's members are about equally likely and their scores point every way: the one-crystal target is mostly
noise around that mean (the "nearest site" plateau of short runs). Taking the mean here, over the orbit,
gives the network the same regression function with far less variance (Rao-Blackwell):

    target_i = sum_g w_g score_i(x_t | g x_0),    w_g  ∝  p(x_t | g x_0) p(types_t | g types_0)

with ``g`` a permutation ``pi`` of the atoms (atom ``i`` takes site ``pi(i)``) and a translation ``c``. The
wrapped normal factorises over atoms and axes, so for each ``pi`` the translation integral splits into one
integral per axis, done on a periodic grid (the trapezoid rule, spectrally accurate while the grid step is below
the width ``sigma / sqrt(N)`` of the translation posterior, :func:`grid_size`).

Which permutations: those that agree with what the network sees. A masked atom (absorbing types) may be any
atom; an unmasked one only an atom of its own type. With types not diffused (structure prediction) or uniform
type noise (whose corrupted types still carry the clean type's likelihood) only same-type swaps are used, a
subgroup of the symmetries, which is still an exact Rao-Blackwellisation. Crystals of more than
:data:`MAX_ATOMS` atoms (``N!`` permutations) are averaged over translations only.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from diffcore.manifolds import torus
from torch import Tensor

__all__ = ["MAX_ATOMS", "MIN_SIGMA", "grid_size", "orbit_score"]

MAX_ATOMS = 6
"""Crystals up to this many atoms are averaged over permutations too (6! = 720), larger ones over translations."""
MIN_SIGMA = 0.04
"""Below this scale the orbit's other members have no weight and the orbit score is the crystal's own score
minus its mean over atoms (what :func:`~diff_materials.diffusion.centre` leaves): callers use that there."""


@functools.lru_cache(maxsize=8)
def _permutations(n: int) -> Tensor:
    """``(n!, n)`` every permutation of ``n`` atoms (the identity first), or ``(1, n)`` the identity alone for
    ``n > MAX_ATOMS``."""
    if n > MAX_ATOMS:
        return torch.arange(n)[None]
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


def grid_size(sigma: Tensor, num_atoms: int) -> Tensor:
    """The translation grid of :func:`orbit_score` for crystals of ``num_atoms`` atoms at scales ``sigma``
    (C,): the power of two (at least 8) whose step ``1 / grid`` is below ``sigma / sqrt(N)``, the width of the
    posterior of the translation, where the periodic trapezoid rule is accurate to ``exp(-2 pi^2)``."""
    need = math.sqrt(num_atoms) / sigma.double().clamp_min(1e-6)
    return torch.exp2(torch.ceil(torch.log2(need))).clamp_min(8).long()


def orbit_score(
    frac_t: Tensor,
    frac0: Tensor,
    sigma: Tensor,
    types0: Tensor,
    types_seen: Tensor | None = None,
    mask_id: int | None = None,
) -> Tensor:
    """The orbit-averaged wrapped-normal score (see the module docstring) of crystals of one size ``N``.

    frac_t, frac0: (C, N, 3) noisy and clean fractional coordinates; sigma: (C,) the wrapped normal's scale;
    types0: (C, N) clean atom types; types_seen: (C, N) the types the network sees (``mask_id`` where masked),
    None when they are the clean ones. Returns (C, N, 3) the unnormalised score, computed in the dtype of
    ``frac_t``. The translation grid is :func:`grid_size` of each crystal's ``sigma``, so the cost grows like
    ``1 / sigma`` (callers use the crystal's own centred score below :data:`MIN_SIGMA`, where it is equal).
    """
    if frac_t.ndim != 3 or frac_t.shape != frac0.shape or frac_t.shape[-1] != 3:
        raise ValueError(
            f"frac_t, frac0: expected two (C, N, 3), got {tuple(frac_t.shape)}, {tuple(frac0.shape)}"
        )
    n = frac_t.shape[1]
    perms = _permutations(n).to(frac_t.device)  # (P, N)
    # which permutations each crystal allows: atom i may take site pi(i) if it is masked or of that type
    seen = types0 if types_seen is None else types_seen
    agree = seen[:, None, :] == types0[:, perms]  # (C, P, N)
    if types_seen is not None and mask_id is not None:
        agree = agree | (seen == mask_id)[:, None, :]
    allowed = agree.all(-1)  # (C, P); the identity is always allowed
    out = torch.empty_like(frac_t)
    sizes = grid_size(sigma, n)
    for g in sizes.unique().tolist():
        rows = sizes == g
        out[rows] = _orbit_score(frac_t[rows], frac0[rows], sigma[rows], perms, allowed[rows], g)
    return out


def _orbit_score(
    frac_t: Tensor, frac0: Tensor, sigma: Tensor, perms: Tensor, allowed: Tensor, grid: int
) -> Tensor:
    c_, n, _ = frac_t.shape
    onehot = torch.nn.functional.one_hot(perms, n).to(frac_t.dtype)  # (P, N_i, N_j): [pi(i) == j]
    shift = torch.arange(grid, dtype=frac_t.dtype, device=frac_t.device) / grid
    # every atom i against every site j on every axis and translation: (C, N_i, N_j, 3, G)
    u = frac_t[:, :, None, :, None] - frac0[:, None, :, :, None] - shift
    s = sigma.to(frac_t.dtype).reshape(c_, 1, 1, 1, 1, 1)
    log_p, score = torus.wrapped_normal_terms(u[..., None], torch.zeros_like(u[..., None]), s)
    log_p, score = log_p[..., 0], score[..., 0]
    # per permutation, axis and translation: the log likelihood of the whole crystal
    log_pc = torch.einsum("pij,cijag->cpag", onehot, log_p)  # (C, P, 3, G)
    log_pp = torch.logsumexp(log_pc, -1).sum(-1)  # (C, P): translations integrated (up to a constant)
    log_pp = log_pp.masked_fill(~allowed, -math.inf)
    w = torch.softmax(log_pp, -1)[..., None, None] * torch.softmax(log_pc, -1)  # (C, P, 3, G)
    pair = torch.einsum("cpag,pij->cijag", w, onehot)  # weight of atom i on site j, per axis and shift
    return (pair * score).sum((2, 4))
