"""The optimised grid beats the fixed grids at low NFE on held-out noise, never loses on its own batch, is
a plain grid tensor for ``diffcore.sample`` and is not a grid name (it needs a model and a sampler)."""

from __future__ import annotations

import functools

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.schedules import get
from diffcore.sampling.grid_search import optimize_grid, reference_solution

GM = GaussianMixture.random(2, 4, seed=0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def normal(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@functools.cache
def optimized(schedule: str, prediction: str, steps: int) -> torch.Tensor:
    den = GM.denoiser(get(schedule), prediction)
    return optimize_grid(den, "dpmpp_2m", steps, normal(128, 1), reference_steps=100)


@pytest.mark.parametrize("schedule, prediction", [("vp-linear", "eps"), ("rectified-flow", "velocity")])
def test_beats_fixed_grids_at_nfe_5(schedule, prediction):
    den = GM.denoiser(get(schedule), prediction)
    grid = optimized(schedule, prediction, 5)
    test, truth = normal(3000, 2), GM.sample(3000, generator=torch.Generator().manual_seed(3))
    ours = sliced_wasserstein(diffcore.sample(den, test, "dpmpp_2m", 5, grid=grid), truth)
    for name in ("uniform", "log-snr", "karras"):
        fixed = sliced_wasserstein(diffcore.sample(den, test, "dpmpp_2m", 5, grid=name), truth)
        assert ours < fixed, (name, ours, fixed)


def test_never_worse_than_its_start_on_the_batch():
    den = GM.denoiser(get("vp-linear"), "eps")
    noise = normal(128, 1)
    ref = reference_solution(den, noise, steps=100)
    grid = optimized("vp-linear", "eps", 5)
    assert len(grid) == 6 and grid[0] == 1.0 and grid[-1] == 0.0 and bool((grid[1:] < grid[:-1]).all())

    def loss(g):
        return float(((diffcore.sample(den, noise, "dpmpp_2m", 5, grid=g) - ref) ** 2).sum(1).mean())

    for name in ("uniform", "log-snr", "karras"):
        assert loss(grid) <= loss(name) + 1e-12


def test_reference_solution_is_converged():
    den = GM.denoiser(get("vp-linear"), "eps")
    noise = normal(64, 5)
    a, b = reference_solution(den, noise, steps=100), reference_solution(den, noise, steps=200)
    assert float((a - b).norm(dim=1).max()) < 1e-4


def test_grid_is_a_tensor_for_sample_not_a_name_and_errors():
    den = GM.denoiser(get("edm"), "eps")
    noise = normal(32, 6)
    grid = optimize_grid(den, "dpmpp_2m", 3, noise, sweeps=1, reference_steps=60)
    assert grid.dtype == torch.float64 and grid.shape == (4,) and grid[0] == 1.0 and grid[-1] == 0.0
    out = diffcore.sample(den, noise, "dpmpp_2m", 3, grid=grid)
    torch.testing.assert_close(out, diffcore.sampling.get("dpmpp_2m").fn(
        den, float(den.schedule.sigma(grid[:1])) * noise, grid, cond={}, generator=None, callback=None
    ))  # fmt: skip
    assert "optimized" not in diffcore.sampling.grids.available()
    with pytest.raises(ValueError, match="grid: unknown name 'optimized'"):
        diffcore.sample(den, noise, "dpmpp_2m", 3, grid="optimized")
    with pytest.raises(ValueError, match="deterministic"):
        optimize_grid(den, "dpmpp_2m_sde", 3, noise)
