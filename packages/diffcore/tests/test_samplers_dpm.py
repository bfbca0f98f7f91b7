"""DPM-Solver / DPM-Solver++ against analytic answers: convergence orders on a Gaussian mixture with the
exact denoiser, exactness of the multistep weights on polynomials, every schedule, dtypes, shapes and no
host-device synchronisation (the loop runs on the meta device). The final step to ``t = 0`` is checked for
every sampler in ``test_samplers_last_step.py``."""

from __future__ import annotations

import functools
import math

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.denoiser import Denoiser
from diffcore.paths.schedules import ZeroTerminalSNR, get
from diffcore.sampling.dpm_solver import multistep_weights
from diffcore.sampling.steps import phi

GM = GaussianMixture.random(2, 3, seed=1)
SAMPLERS = ["dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpmpp_2m", "dpmpp_3m"]
STOCHASTIC = ["dpmpp_2m_sde", "dpmpp_2s_ancestral"]


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def problem(run, lambda_grid, schedule: str, t0: float, t1: float):
    """Exact denoiser, a start state and the reference ODE solution (DPM-Solver-3, 300 steps)."""
    sched = get(schedule)
    den = GM.denoiser(sched, "eps")
    g = torch.Generator().manual_seed(0)
    x = float(sched.sigma(torch.tensor(t0))) * torch.randn(48, 2, generator=g, dtype=torch.float64)
    return sched, den, x, run("dpm_solver_3", den, x, lambda_grid(sched, t0, t1, 300))


def errors(run, lambda_grid, schedule: str, t0: float, t1: float, name: str, steps, **kw) -> list[float]:
    sched, den, x, ref = problem(run, lambda_grid, schedule, t0, t1)
    out = [run(name, den, x, lambda_grid(sched, t0, t1, n, warm=True), **kw) for n in steps]
    return [float((o - ref).norm(dim=1).mean()) for o in out]


@pytest.mark.parametrize(
    "name, kw, order",
    [
        ("dpm_solver_1", {}, 1),
        ("dpm_solver_2", {}, 2),
        ("dpm_solver_3", {}, 3),
        ("dpmpp_2m", {"lower_order_final": False}, 2),
        ("dpmpp_2m", {"solver_type": "heun", "lower_order_final": False}, 2),
        ("dpmpp_3m", {"lower_order_final": False}, 3),
    ],
)
def test_convergence_order(run, lambda_grid, name, kw, order):
    """Error against the reference ODE solution falls like ``steps^-order`` (slope of log2 error)."""
    errs = errors(run, lambda_grid, "vp-linear", 0.9, 0.05, name, (20, 40), **kw)
    slope = math.log2(errs[0] / errs[1])
    assert order - 0.4 < slope < order + 0.7, (errs, slope)


def test_third_order_weight_is_taylor_consistent(run, lambda_grid):
    """diffusers' / k-diffusion's 3M weight on D2 is half the Taylor weight: the method stays second order."""
    kw = {"lower_order_final": False}
    taylor = errors(run, lambda_grid, "edm", 1.0, 0.002, "dpmpp_3m", (60,), d2_weight="taylor", **kw)[0]
    diffusers = errors(run, lambda_grid, "edm", 1.0, 0.002, "dpmpp_3m", (60,), d2_weight="diffusers", **kw)[0]
    assert taylor < 0.7 * diffusers


@pytest.mark.parametrize("h", [0.05, 0.4, 1.3])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_multistep_weights_exact_on_polynomials(h, order):
    """``alpha_t sum_j w_j m_j`` must equal ``alpha_t int_0^h e^{-(h-u)} D(lambda_s + u) du`` for data
    predictions ``D`` polynomial in lambda of degree < order (the exponential-integrator solution)."""
    h_prev = [0.7 * h, 1.6 * h][: order - 1]
    nodes = [0.0, -h_prev[0] if order > 1 else 0.0]
    if order > 2:
        nodes.append(nodes[1] - h_prev[1])
    w = multistep_weights(order, h, h_prev, "heun", "taylor")  # midpoint: exact on constants only
    u = torch.linspace(0, h, 20001, dtype=torch.float64)
    for degree in range(order):
        approx = sum(wj * lam**degree for wj, lam in zip(w, nodes))
        exact = float(torch.trapezoid(torch.exp(-(h - u)) * u**degree, u))
        assert approx == pytest.approx(exact, rel=1e-6, abs=1e-9), (degree, approx, exact)


def test_phi_series_matches_closed_form():
    for k in range(4):
        for h in (1e-3, 0.05, 0.3, 2.0):
            u = torch.linspace(0, h, 20001, dtype=torch.float64)
            exact = float(torch.trapezoid(torch.exp(-(h - u)) * u**k / math.factorial(k), u))
            assert phi(k, h) == pytest.approx(exact, rel=1e-6)
    assert phi(0, math.inf) == 1.0


SCHEDULES = {
    "vp-linear": (get("vp-linear"), "eps"),
    "ddpm-linear": (get("ddpm-linear"), "eps"),
    "vp-cosine": (get("vp-cosine"), "v"),
    "ve": (get("ve", sigma_max=80.0), "eps"),
    "edm": (get("edm"), "x0"),
    "rectified-flow": (get("rectified-flow"), "velocity"),
    "ztsnr": (ZeroTerminalSNR(get("ddpm-scaled-linear")), "v"),
}


@pytest.mark.parametrize("sampler", SAMPLERS + STOCHASTIC)
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_schedule_reaches_the_target(lambda_grid, sampler, schedule):
    sched, pred = SCHEDULES[schedule]
    den = GM.denoiser(sched, pred)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    steps = 30 if diffcore.sampling.get(sampler).nfe_per_step == 1 else 15
    grid = None  # uniform in t, except where sigma spans decades: uniform in log-SNR, then t = 0
    if schedule in ("edm", "ve"):
        grid = torch.cat([lambda_grid(sched, 1.0, 1e-3, steps - 1), torch.zeros(1, dtype=torch.float64)])
    out = diffcore.sample(den, noise, sampler=sampler, steps=steps, grid=grid, generator=g)
    assert torch.isfinite(out).all()
    truth = GM.sample(1500, generator=torch.Generator().manual_seed(3))
    floor = sliced_wasserstein(GM.sample(1500, generator=torch.Generator().manual_seed(4)), truth)
    assert sliced_wasserstein(out, truth) < floor + 0.12


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_3m", "dpm_solver_2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_and_image_shapes(sampler, dtype):
    gm = GaussianMixture.random(12, 3, seed=2)
    den = gm.denoiser(get("vp-linear"), "eps")
    noise = torch.randn(32, 3, 2, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ref = diffcore.sample(den, noise, sampler=sampler, steps=10)
    out = diffcore.sample(den, noise.to(dtype), sampler=sampler, steps=10)
    assert out.dtype == dtype and out.shape == noise.shape
    tol = 1e-4 if dtype == torch.float32 else 0.1
    assert float((out.double() - ref).abs().mean()) < tol


@pytest.mark.parametrize("sampler", SAMPLERS + STOCHASTIC)
def test_no_host_device_sync(sampler):
    """On the meta device any ``.item()``, ``bool(tensor)`` or device-to-host copy raises."""
    den = Denoiser(lambda x, t: 0.5 * x + t[:, None] * 0.0, get("ddpm-linear"), "eps")
    x = torch.empty(4, 2, device="meta")
    out = diffcore.sample(den, x, sampler=sampler, steps=6)
    assert out.shape == (4, 2) and out.device.type == "meta"


def test_sde_with_eta_zero_is_2m_and_seeded_noise_is_reproducible():
    sched = get("vp-linear")
    den = GM.denoiser(sched, "eps")
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    a = diffcore.sample(den, noise, sampler="dpmpp_2m_sde", steps=12, eta=0.0)
    b = diffcore.sample(den, noise, sampler="dpmpp_2m", steps=12, lower_order_final=False)
    torch.testing.assert_close(a, b)
    c1 = diffcore.sample(
        den, noise, sampler="dpmpp_2m_sde", steps=12, generator=torch.Generator().manual_seed(1)
    )
    c2 = diffcore.sample(
        den, noise, sampler="dpmpp_2m_sde", steps=12, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(c1, c2)
    assert not torch.allclose(c1, b)


def test_bad_options_are_named():
    den = GM.denoiser(get("vp-linear"), "eps")
    noise = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="r1"):
        diffcore.sample(den, noise, sampler="dpm_solver_2", steps=4, r1=1.5)
    with pytest.raises(ValueError, match="solver_type"):
        diffcore.sample(den, noise, sampler="dpmpp_2m", steps=4, solver_type="rk")
    with pytest.raises(ValueError, match="d2_weight"):
        diffcore.sample(den, noise, sampler="dpmpp_3m", steps=4, d2_weight="x")
    with pytest.raises(ValueError, match="eta"):
        diffcore.sample(den, noise, sampler="dpmpp_2m_sde", steps=4, eta=-1.0)
