"""The objectives of the grid optimiser: the paired MSE and the sliced-Wasserstein distance between the
sampler's and the ODE's end points as sets."""

from __future__ import annotations

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.schedules import get
from diffcore.sampling.grid_search import objective_value, optimize_grid, reference_solution

GM = GaussianMixture.random(2, 4, seed=0)


def normal(n: int, seed: int, dim: int = 2) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_objective_values() -> None:
    a, b = normal(200, 0, dim=3), normal(200, 1, dim=3)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(2))
    assert objective_value("mse", a, a) == 0.0
    torch.testing.assert_close(objective_value("mse", a, b), float(((a - b) ** 2).sum(1).mean()))
    # a set distance: blind to the order of the batch, zero for a permutation of the same points
    assert objective_value("sliced-wasserstein", a[perm], a) == pytest.approx(0.0, abs=1e-24)
    assert objective_value("sliced-wasserstein", a[perm], b) == pytest.approx(
        objective_value("sliced-wasserstein", a, b)
    )
    # sorting is the optimal 1-D coupling and |<theta, d>| <= |d|: never above the paired MSE
    assert 0.0 < objective_value("sliced-wasserstein", a, b) <= objective_value("mse", a, b)
    # a shift by c moves every projection by <theta, c>: W2^2 = mean_theta <theta, c>^2 <= |c|^2
    c = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    shifted = objective_value("sliced-wasserstein", a + c, a)
    assert 0.0 < shifted <= float(c @ c) + 1e-12


def test_sliced_wasserstein_grid_never_worse_than_its_start() -> None:
    den = GM.denoiser(get("vp-linear"), "eps")
    noise = normal(128, 1)
    ref = reference_solution(den, noise, steps=100)
    grid = optimize_grid(den, "dpmpp_2m", 4, noise, reference=ref, sweeps=1, objective="sliced-wasserstein")
    assert len(grid) == 5 and grid[0] == 1.0 and grid[-1] == 0.0 and bool((grid[1:] < grid[:-1]).all())

    def loss(g):
        return objective_value("sliced-wasserstein", diffcore.sample(den, noise, "dpmpp_2m", 4, grid=g), ref)

    for name in ("uniform", "log-snr", "karras"):
        assert loss(grid) <= loss(name) + 1e-15


def test_unknown_objective_is_named() -> None:
    den = GM.denoiser(get("vp-linear"), "eps")
    with pytest.raises(ValueError, match="objective"):
        optimize_grid(den, "dpmpp_2m", 3, normal(8, 0), objective="kl")
