"""Time grids: shape, ends, spacing laws (uniform in log-SNR, Karras rho), diffusers timestep parity."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.paths import schedules as S
from diffcore.sampling import grids

SCHEDULES = {
    "vp-linear": S.get("vp-linear"),
    "vp-cosine": S.get("vp-cosine"),
    "ddpm-linear": S.get("ddpm-linear"),
    "ve": S.get("ve"),
    "edm": S.get("edm"),
    "rectified-flow": S.get("rectified-flow"),
    "ztsnr": S.ZeroTerminalSNR(S.get("ddpm-scaled-linear")),
    "shifted-rf": S.Shifted(S.get("rectified-flow"), 3.0),
}


def _lam(schedule, t):
    return schedule.log_snr(torch.as_tensor(t, dtype=torch.float64))


@pytest.mark.parametrize("name", ["uniform", "log-snr", "karras", "trailing"])
@pytest.mark.parametrize("schedule", list(SCHEDULES), ids=list(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 7, 25])
def test_grid_shape_ends_and_order(name, schedule, steps):
    grid = grids.make(name, SCHEDULES[schedule], steps)
    assert grid.dtype == torch.float64 and grid.device.type == "cpu"
    assert grid.shape == (steps + 1,)
    assert grid[0] == 1.0 and grid[-1] == 0.0
    assert bool((grid[1:] < grid[:-1]).all())


@pytest.mark.parametrize("schedule", ["vp-linear", "ve", "rectified-flow", "ztsnr"])
def test_grid_partial_range(schedule):
    for name in ("uniform", "log-snr", "karras", "trailing"):
        grid = grids.make(name, SCHEDULES[schedule], 10, t_start=0.8, t_end=0.05)
        assert grid[0] == 0.8 and grid[-1] == 0.05 and len(grid) == 11
        assert bool((grid[1:] < grid[:-1]).all())


@pytest.mark.parametrize(
    "schedule", ["vp-linear", "vp-cosine", "edm", "rectified-flow", "ztsnr", "ddpm-linear"]
)
def test_log_snr_grid_is_uniform_in_log_snr(schedule):
    sched = SCHEDULES[schedule]
    grid = grids.make("log-snr", sched, 12, t_min=1e-3, t_max=0.99)
    assert grid[-1] == 0.0  # every schedule here has sigma(0) = 0: the exact 0 is appended
    interior = grid[1:-1]  # the start may be the exact t = 1 (alpha = 0) and is then excluded too
    lam = _lam(sched, interior)
    gaps = lam[1:] - lam[:-1]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=1e-6, atol=1e-6)
    assert math.isclose(float(grid[-2]), 1e-3, rel_tol=1e-6)  # the spacing stops at t_min
    if math.isfinite(float(_lam(sched, 1.0))):
        assert torch.allclose(lam[0] - gaps[0], _lam(sched, 1.0), atol=1e-6)


def test_log_snr_grid_with_finite_ends_has_no_appended_point():
    """VE: sigma(0) = sigma_min > 0, log-SNR is finite at both ends: steps + 1 points, all equally spaced."""
    sched = SCHEDULES["ve"]
    lam = _lam(sched, grids.make("log-snr", sched, 8))
    gaps = lam[1:] - lam[:-1]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=1e-9)


def test_karras_grid_on_edm_is_edm_formula():
    """On the EDM path (sigma = 80 t) the grid is Karras et al. Eq. 5 with sigma_min = 0.002, then 0."""
    sched = SCHEDULES["edm"]
    n, rho, smin, smax = 18, 7.0, 0.002, 80.0
    grid = grids.make("karras", sched, n, sigma_min=smin)
    i = torch.arange(n, dtype=torch.float64)
    sig = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    assert torch.allclose(grid[:-1] * 80.0, sig, rtol=1e-12)
    assert grid[-1] == 0.0


def test_karras_grid_in_data_units_on_vp():
    """Interior points of a VP Karras grid follow the rho law in sigma / alpha = exp(-lambda / 2)."""
    sched = SCHEDULES["vp-linear"]
    rho = 7.0
    grid = grids.make("karras", sched, 10, rho=rho, t_min=1e-3)
    s = torch.exp(-0.5 * _lam(sched, grid[:-1])) ** (1 / rho)
    gaps = s[1:] - s[:-1]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=1e-6)


def test_karras_sigma_max_replaces_infinite_start():
    sched = SCHEDULES["ztsnr"]
    grid = grids.make("karras", sched, 10, sigma_max=14.6, sigma_min=0.03)
    assert grid[0] == 1.0  # the exact zero-terminal-SNR end is kept
    assert math.isclose(float(torch.exp(-0.5 * _lam(sched, grid[-2]))), 0.03, rel_tol=1e-6)


diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("steps", [10, 25, 50])
def test_discrete_spacings_match_diffusers(spacing, steps):
    """Lin et al. 2024, Table 2: diffusers' 0-based timestep k sits at t = (k + 1) / T; then t = 0."""
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    expected = (scheduler.timesteps.to(torch.float64) + 1) / 1000
    grid = grids.make(spacing, SCHEDULES["ddpm-linear"], steps)
    assert torch.equal(grid[:-1], expected) and grid[-1] == 0.0


def test_trailing_table_2_values():
    grid = grids.make("trailing", SCHEDULES["ddpm-linear"], 10)
    assert torch.equal(grid * 1000, torch.tensor([1000.0, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "nope", "steps": 10}, "grid"),
        ({"name": "uniform", "steps": 0}, "steps"),
        ({"name": "uniform", "steps": 2.5}, "steps"),
        ({"name": "uniform", "steps": 10, "t_start": 0.2, "t_end": 0.5}, "t_start"),
        ({"name": "log-snr", "steps": 10, "t_min": 0.0}, "t_min"),
        ({"name": "karras", "steps": 10, "rho": 0.0}, "rho"),
        ({"name": "karras", "steps": 10, "sigma_min": -1.0}, "sigma_min"),
        ({"name": "trailing", "steps": 2000}, "steps"),
        ({"name": "leading", "steps": 10, "t_start": 0.5}, "t_start"),
    ],
)
def test_grid_errors_name_the_parameter(kwargs, match):
    kwargs = dict(kwargs)
    name, steps = kwargs.pop("name"), kwargs.pop("steps")
    with pytest.raises(ValueError, match=match):
        grids.make(name, SCHEDULES["ddpm-linear"], steps, **kwargs)


@pytest.mark.parametrize(
    "grid",
    [
        torch.tensor([1.0]),
        torch.tensor([0.5, 0.7]),
        torch.tensor([1.5, 0.0]),
        torch.tensor([1.0, 0.5, 0.5, 0.0]),
    ],
)
def test_check_grid_rejects_bad_grids(grid):
    with pytest.raises(ValueError, match="grid"):
        grids.check_grid(grid)
