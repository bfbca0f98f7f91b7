"""Voxel-aligned Gaussians (L3DG, Roessle et al. 2024): a splat set as a dense ``G^3`` grid of attributes.

The cube ``[-extent, extent]^3`` is cut into ``G^3`` cells of side ``2 extent / G``. Each occupied cell holds one
Gaussian; a grid is ``(B, 15, G, G, G)`` with channels (``VOXEL_CHANNELS``)::

    occupancy (1, in [0, 1]) | offset (3) | quat (4, wxyz) | log_scales (3) | opacity_logit (1) | colour (3)

``offset`` is the centre's position inside its cell, ``2 (p - c) / side`` in ``[-1, 1]`` for cell centre ``c``.
Empty cells are all zero. Axes are ``(x, y, z)`` in that order (``grid[:, :, i, j, k]`` is the cell at
``x_i, y_j, z_k``).

Going to the grid loses what a cell cannot hold: of several Gaussians in one cell the most opaque is kept, and a
centre outside the cube is moved to its border cell. A set with at most one Gaussian per cell inside the cube
comes back exactly (up to float rounding), in the cells' row-major order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diff_3d.models import layout
from diff_3d.models.layout import FEATURES, MEANS, check_features

__all__ = [
    "ATTRIBUTES",
    "COLOUR",
    "LOG_SCALES",
    "OCCUPANCY",
    "OFFSET",
    "OPACITY",
    "QUAT",
    "VOXEL_CHANNELS",
    "features_to_voxels",
    "voxel_index",
    "voxels_to_features",
]

VOXEL_CHANNELS = 15
OCCUPANCY = slice(0, 1)
OFFSET = slice(1, 4)
QUAT = slice(4, 8)
LOG_SCALES = slice(8, 11)
OPACITY = slice(11, 12)
COLOUR = slice(12, 15)
ATTRIBUTES = slice(4, 15)
"""The channels copied from the features' columns 3..13 (quat, log-scales, opacity, colour)."""


def _check_grid(grid: int, extent: float) -> None:
    if grid < 1:
        raise ValueError(f"grid: expected >= 1 cells per axis, got {grid}")
    if not extent > 0:
        raise ValueError(f"extent: expected > 0, got {extent}")


def voxel_index(means: Tensor, grid: int, extent: float) -> Tensor:
    """Integer cell coordinates ``(..., 3)`` of centres ``means`` ``(..., 3)`` (clamped to the grid)."""
    _check_grid(grid, extent)
    cell = 2 * extent / grid
    return torch.floor((means + extent) / cell).long().clamp(0, grid - 1)


def features_to_voxels(features: Tensor, grid: int, extent: float = 1.0, merge: bool = False) -> Tensor:
    """Splat sets ``(B, N, 14)`` -> voxel grids ``(B, 15, G, G, G)`` (the most opaque Gaussian of each cell).

    ``merge``: a cell of ``k > 1`` Gaussians holds one that stands for all of them: the mean of their offsets and
    colours, the most opaque one's rotation and opacity, and its log-scales plus ``log(k) / 2`` (``k`` surface
    discs cover about ``k`` times the area). A coarse grid then loses no surface to the cells' single slots, and
    the offset and colour targets are averages rather than one random member. A lone Gaussian is kept as it is.
    """
    check_features(features)
    _check_grid(grid, extent)
    b = features.shape[0]
    cell = 2 * extent / grid
    means = features[..., MEANS]
    idx = voxel_index(means, grid, extent)
    offset = 2 * ((means + extent) / cell - idx - 0.5)
    lin = (idx[..., 0] * grid + idx[..., 1]) * grid + idx[..., 2]  # (B, N)
    out = features.new_zeros((b, grid**3, VOXEL_CHANNELS))
    rows = torch.cat([torch.ones_like(features[..., :1]), offset.clamp(-1, 1), features[..., 3:]], dim=-1)
    for i in range(b):
        # Sort by cell, opacity ascending within a cell; the last row of each cell is its most opaque Gaussian.
        by_opacity = torch.argsort(features[i, :, layout.OPACITY].squeeze(-1), stable=True)
        order = by_opacity[torch.argsort(lin[i, by_opacity], stable=True)]
        cells = lin[i, order]
        last = torch.ones_like(cells, dtype=torch.bool)
        last[:-1] = cells[1:] != cells[:-1]
        out[i, cells[last]] = rows[i, order[last]]
        if merge:
            count = torch.bincount(lin[i], minlength=grid**3).to(rows.dtype)
            occupied = cells[last]
            k = count[occupied, None]
            for ch in (OFFSET, COLOUR):
                total = rows.new_zeros((grid**3, ch.stop - ch.start)).index_add_(0, lin[i], rows[i, :, ch])
                out[i, occupied, ch] = total[occupied] / k
            out[i, occupied, LOG_SCALES] += 0.5 * torch.log(k)
    return out.transpose(1, 2).reshape(b, VOXEL_CHANNELS, grid, grid, grid)


def voxels_to_features(
    voxels: Tensor, extent: float = 1.0, threshold: float = 0.5, budget: int | None = None
) -> list[Tensor]:
    """Voxel grids ``(B, 15, G, G, G)`` -> one splat set ``(n_i, 14)`` per grid: the cells whose occupancy is
    above ``threshold``, in row-major cell order; with ``budget`` at most that many (the most occupied), and at
    least one (the most occupied cell) so every object has a Gaussian."""
    if voxels.ndim != 5 or voxels.shape[1] != VOXEL_CHANNELS or len(set(voxels.shape[2:])) != 1:
        raise ValueError(f"voxels: expected (B, {VOXEL_CHANNELS}, G, G, G), got {tuple(voxels.shape)}")
    if budget is not None and budget < 1:
        raise ValueError(f"budget: expected >= 1 Gaussians or None, got {budget}")
    b, _, grid = voxels.shape[:3]
    _check_grid(grid, extent)
    cell = 2 * extent / grid
    rows = voxels.reshape(b, VOXEL_CHANNELS, -1).transpose(1, 2)  # (B, G^3, 15)
    axis = torch.arange(grid, device=voxels.device)
    ijk = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    out = []
    for i in range(b):
        occ = rows[i, :, 0]
        keep = torch.nonzero(occ > threshold).flatten()
        if budget is not None and keep.numel() > budget:
            keep = torch.sort(torch.topk(occ, budget).indices).values
        if keep.numel() == 0:
            keep = occ.argmax().reshape(1)
        r = rows[i, keep]
        means = (ijk[keep] + 0.5 + r[:, OFFSET].clamp(-1, 1) / 2) * cell - extent
        out.append(torch.cat([means.to(r.dtype), r[:, ATTRIBUTES]], dim=-1))
    assert all(o.shape[-1] == FEATURES for o in out)
    return out
