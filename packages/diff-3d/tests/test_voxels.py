"""Voxel-aligned Gaussians (L3DG): the grid conversion both ways, and what a cell cannot hold."""

import math

import pytest
import torch
from diff_3d.models.layout import FEATURES
from diff_3d.voxels import VOXEL_CHANNELS, features_to_voxels, voxel_index, voxels_to_features


def one_per_cell(grid: int, cells: torch.Tensor, extent: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Features ``(1, n, 14)`` with one Gaussian inside each of the given cells (linear indices, ascending)."""
    g = torch.Generator().manual_seed(seed)
    n = cells.numel()
    ijk = torch.stack([cells // grid**2, (cells // grid) % grid, cells % grid], -1).float()
    side = 2 * extent / grid
    means = (ijk + 0.05 + 0.9 * torch.rand((n, 3), generator=g)) * side - extent
    rest = torch.randn((n, FEATURES - 3), generator=g)
    return torch.cat([means, rest], -1)[None]


def test_round_trip_gives_back_every_gaussian_exactly():
    grid = 8
    cells = torch.sort(torch.randperm(grid**3, generator=torch.Generator().manual_seed(1))[:100]).values
    features = one_per_cell(grid, cells, extent=1.5)
    voxels = features_to_voxels(features, grid, extent=1.5)
    assert voxels.shape == (1, VOXEL_CHANNELS, grid, grid, grid)
    assert int(voxels[:, 0].sum()) == 100
    (back,) = voxels_to_features(voxels, extent=1.5)
    torch.testing.assert_close(back, features[0], rtol=0, atol=1e-6)


def test_a_cell_keeps_its_most_opaque_gaussian():
    a = torch.zeros(FEATURES)
    a[10] = -1.0  # opacity logit
    b = a.clone()
    b[10], b[11:14] = 3.0, torch.tensor([1.0, 2.0, 3.0])
    b[:3] = 0.01
    voxels = features_to_voxels(torch.stack([b, a])[None], grid=4)
    (back,) = voxels_to_features(voxels)
    assert back.shape == (1, FEATURES)
    torch.testing.assert_close(back[0], b, rtol=0, atol=1e-6)


def test_the_cell_of_a_point_is_the_floor_of_its_position_and_outside_points_clamp():
    means = torch.tensor([[-1.0, -0.01, 0.99], [5.0, -5.0, 0.0]])
    assert voxel_index(means, 4, 1.0).tolist() == [[0, 1, 3], [3, 0, 2]]


def test_budget_keeps_the_most_occupied_cells_and_an_empty_grid_still_gives_one():
    voxels = torch.zeros(2, VOXEL_CHANNELS, 4, 4, 4)
    voxels[0, 0].view(-1)[torch.arange(10)] = torch.linspace(0.6, 0.95, 10)
    voxels[1, 0, 1, 2, 3] = 0.2
    first, second = voxels_to_features(voxels, budget=3)
    assert first.shape == (3, FEATURES)
    assert second.shape == (1, FEATURES)
    side = 0.5
    torch.testing.assert_close(second[0, :3], torch.tensor([1.5, 2.5, 3.5]) * side - 1.0)


def test_bad_shapes_are_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="features: expected a float tensor"):
        features_to_voxels(torch.zeros(3, 14), 4)
    with pytest.raises(ValueError, match="voxels: expected"):
        voxels_to_features(torch.zeros(1, 14, 4, 4, 4))
    with pytest.raises(ValueError, match="grid: expected"):
        features_to_voxels(torch.zeros(1, 3, 14), 0)


def test_merging_a_cell_averages_offsets_and_colours_and_grows_the_scales():
    a = torch.zeros(FEATURES)
    a[:3], a[7:10], a[10], a[11:14] = 0.1, -3.0, -1.0, torch.tensor([1.0, 0.0, 0.0])
    b = a.clone()
    b[:3], b[10], b[11:14] = 0.3, 3.0, torch.tensor([0.0, 1.0, 0.0])
    lone = a.clone()
    lone[:3] = -0.7
    voxels = features_to_voxels(torch.stack([a, b, lone])[None], grid=4, merge=True)
    (rows,) = voxels_to_features(voxels)
    first, second = rows  # row-major: the lone cell (0, 0, 0) first
    torch.testing.assert_close(first, lone, rtol=0, atol=1e-6)
    torch.testing.assert_close(second[:3], torch.full((3,), 0.2), rtol=0, atol=1e-6)
    torch.testing.assert_close(second[11:14], torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(second[7:10], torch.full((3,), -3.0 + 0.5 * math.log(2.0)))
    assert float(second[10]) == 3.0  # the most opaque one's opacity


def test_splitting_merged_cells_gives_the_budget_and_shrinks_the_split_ones():
    from diff_3d.models.l3dg import split_cells

    rows = torch.zeros(4, FEATURES)
    rows[:, 3] = 1.0  # identity rotation
    rows[:, 7:10] = math.log(0.1)
    rows[:, :3] = torch.arange(4.0)[:, None]
    out = split_cells(rows, 10, torch.Generator().manual_seed(0))
    assert out.shape == (10, FEATURES)
    # every cell is kept; children stay inside their parent's 1-sigma ball with scales shrunk by sqrt(children)
    parent = torch.cdist(out[:, :3], rows[:, :3]).argmin(1)
    assert set(parent.tolist()) == {0, 1, 2, 3}
    count = torch.bincount(parent, minlength=4).float()
    assert float((out[:, :3] - rows[parent, :3]).norm(dim=-1).max()) <= 0.1 + 1e-6
    torch.testing.assert_close(
        out[:, 7:10], (math.log(0.1) - 0.5 * count[parent].log())[:, None].expand(-1, 3)
    )
    assert torch.equal(split_cells(rows, 3), rows)  # enough cells already: as is
