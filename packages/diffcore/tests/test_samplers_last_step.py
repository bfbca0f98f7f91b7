"""The one last-step rule of every sampler (``GridPoint.is_data``): a step that lands on ``t = 0`` returns the
``x0`` estimate at the step's start, on VP, VE (where ``sigma(0) = sigma_min > 0``), EDM and rectified-flow
paths alike; a grid that ends above ``t = 0`` returns the noisy state there."""

from __future__ import annotations

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture

GM = GaussianMixture.random(3, components=2, seed=4)
SCHEDULES = {  # (schedule, what the denoiser predicts)
    "vp": ("vp-linear", "eps"),
    "ve": ("ve", "eps"),
    "edm": ("edm", "x0"),
    "flow": ("rectified-flow", "velocity"),
}
OPTIONS = {"langevin": {"steps_each": 2}, "dopri5": {"rtol": 1e-4, "atol": 1e-4}}
T_START = 0.8


def _run(name: str, schedule: str, times: list[float]) -> tuple[torch.Tensor, list[torch.Tensor], object]:
    """Run the registered sampler on ``times`` from ``x_t`` at ``T_START``; return the output, the states the
    callback saw (one per step) and the denoiser."""
    den = GM.denoiser(*SCHEDULES[schedule])
    sched = den.schedule
    t = torch.tensor(T_START, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0 = GM.sample(6, g)
    x = float(sched.alpha(t)) * x0 + float(sched.sigma(t)) * torch.randn(
        6, 3, generator=g, dtype=torch.float64
    )
    states: list[torch.Tensor] = []
    out = diffcore.sampling.get(name).fn(
        den,
        x,
        torch.tensor(times, dtype=torch.float64),
        cond={},
        generator=torch.Generator().manual_seed(1),
        callback=lambda i, t, xi, x0: states.append(xi),
        **OPTIONS.get(name, {}),
    )
    return out, states, den


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", diffcore.sampling.available())
def test_a_step_to_t_zero_returns_the_x0_estimate_at_its_start(name: str, schedule: str) -> None:
    out, states, den = _run(name, schedule, [T_START, 0.5, 0.2, 0.0])
    assert len(states) == 3 and torch.equal(states[-1], out)
    torch.testing.assert_close(out, den.x0(states[-2], 0.2), rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", diffcore.sampling.available())
def test_a_grid_ending_above_zero_is_not_denoised(name: str, schedule: str) -> None:
    out, states, den = _run(name, schedule, [T_START, 0.5, 0.2])
    assert len(states) == 2 and torch.equal(states[-1], out)
    # the noisy state at t = 0.2 is about sigma(0.2) away from the x0 estimate of the step that led there
    gap = float((out - den.x0(states[-2], 0.5)).norm(dim=1).min())
    sigma = float(den.schedule.sigma(torch.tensor(0.2, dtype=torch.float64)))
    assert gap > 0.05 * sigma, (name, schedule, gap, sigma)
