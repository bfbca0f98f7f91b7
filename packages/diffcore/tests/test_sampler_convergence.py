"""Samplers against analytic answers on Gaussian mixtures, whose exact denoiser is known.

1. Convergence order: on the deterministic probability-flow ODE, the error against a fine RK4 reference
   falls like ``h^p``; the log-log slope fitted over a range of step counts must match ``p``.
2. Distribution: at a generous step count every sampler reproduces the target's mean, covariance and
   sliced Wasserstein distance (close to the floor of two exact sample sets of the same size), in 2D
   and 64D, for VP, VE/EDM and rectified-flow schedules and several prediction types.

Other sampler families extend ``SAMPLER_ORDERS`` and ``SAMPLER_CASES`` below.
"""

from __future__ import annotations

import itertools
import math

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.sampling import get

# (sampler, expected order, options, step counts for the slope fit)
SAMPLER_ORDERS: list[tuple[str, float, dict, tuple[int, ...]]] = [
    ("euler", 1.0, {}, (16, 32, 64, 128)),
    ("ddim", 1.0, {}, (16, 32, 64, 128)),
    ("heun", 2.0, {}, (8, 16, 32, 64)),
    ("midpoint", 2.0, {}, (8, 16, 32, 64)),
    ("rk4", 4.0, {}, (8, 16, 32, 64)),
    # exponential integrators (third-order ones are checked in test_samplers_dpm/unipc.py on log-SNR grids:
    # from alpha = 0 at t = 1 of rectified flow their first step is first order, which caps the slope at 2)
    ("dpm_solver_1", 1.0, {}, (16, 32, 64, 128)),
    ("dpmpp_2m", 2.0, {"lower_order_final": False}, (8, 16, 32, 64)),
    ("unipc", 2.0, {"order": 1}, (8, 16, 32, 64)),
]

# (sampler, schedule, prediction, steps, grid, grid options, sampler options)
EDM_KARRAS = ("karras", {"sigma_min": 0.002})
SAMPLER_CASES: list[tuple[str, str, str, int, str, dict, dict]] = [
    ("ddim", "vp-cosine", "eps", 100, "uniform", {}, {}),
    ("ddim", "rectified-flow", "velocity", 100, "uniform", {}, {"eta": 1.0}),
    ("ddpm", "vp-linear", "eps", 100, "uniform", {}, {}),
    ("ddpm", "edm", "x0", 100, *EDM_KARRAS, {"variance": "large"}),
    ("euler", "rectified-flow", "velocity", 100, "uniform", {}, {}),
    ("euler", "edm", "eps", 100, *EDM_KARRAS, {}),
    ("euler_ancestral", "vp-cosine", "v", 100, "uniform", {}, {}),
    ("heun", "edm", "x0", 30, *EDM_KARRAS, {}),
    ("heun", "edm", "x0", 100, *EDM_KARRAS, {"s_churn": 40.0, "s_noise": 1.0}),
    ("heun", "vp-linear", "v", 50, "log-snr", {}, {}),
    ("midpoint", "rectified-flow", "x0", 50, "uniform", {}, {}),
    ("rk4", "vp-cosine", "eps", 20, "log-snr", {}, {}),
    ("dopri5", "rectified-flow", "velocity", 10, "uniform", {}, {"rtol": 1e-6, "atol": 1e-6}),
    ("euler_maruyama", "vp-linear", "eps", 200, "log-snr", {}, {}),
    ("euler_maruyama", "rectified-flow", "v", 200, "uniform", {}, {}),
    ("pc", "ve", "eps", 100, "uniform", {}, {}),
    ("pc", "vp-cosine", "score", 100, "uniform", {}, {}),
    ("langevin", "ve", "eps", 30, "uniform", {}, {"steps_each": 20}),
]

# a subset again in 64D (one deterministic ODE sampler, one ancestral, one predictor-corrector: the
# corrector's step size depends on the dimension through its norms)
CASES_64D: list[tuple[str, str, str, int, str, dict, dict]] = [
    ("ddim", "vp-cosine", "eps", 50, "log-snr", {}, {}),
    ("heun", "edm", "x0", 20, *EDM_KARRAS, {}),
    ("ddpm", "rectified-flow", "v", 50, "uniform", {}, {}),
    ("pc", "ve", "eps", 60, "uniform", {}, {}),
]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tiny batched ops here run fastest single-threaded (and the test machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _slope(steps: tuple[int, ...], errors: list[float]) -> float:
    """Least-squares slope of ``log error`` against ``log h`` (``h = 1 / steps``)."""
    x = torch.tensor([-math.log(n) for n in steps], dtype=torch.float64)
    y = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


@pytest.fixture(scope="module")
def ode_problem():
    """Rectified flow and VP-linear PF-ODEs of a 2D mixture from t = 1 to t = 0.1, with RK4 references."""
    gm = GaussianMixture.random(2, seed=0)
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    problems = {}
    for schedule, prediction in (("rectified-flow", "velocity"), ("vp-linear", "eps")):
        den = gm.denoiser(schedule, prediction)
        fine = torch.linspace(1.0, 0.1, 257, dtype=torch.float64)
        ref = get("rk4").fn(den, x1, fine, cond={}, generator=None, callback=None)
        problems[schedule] = (den, ref)
    return x1, problems


def test_rk4_reference_agrees_with_dopri5(ode_problem):
    x1, problems = ode_problem
    den, ref = problems["rectified-flow"]
    grid = torch.tensor([1.0, 0.1], dtype=torch.float64)
    out = get("dopri5").fn(den, x1, grid, cond={}, generator=None, callback=None, rtol=1e-9, atol=1e-9)
    assert (out - ref).abs().max() < 1e-6


@pytest.mark.parametrize("schedule", ["rectified-flow", "vp-linear"])
@pytest.mark.parametrize(
    ("name", "order", "options", "steps"), SAMPLER_ORDERS, ids=[c[0] for c in SAMPLER_ORDERS]
)
def test_convergence_order(ode_problem, schedule, name, order, options, steps):
    x1, problems = ode_problem
    den, ref = problems[schedule]
    errors = []
    for n in steps:
        grid = torch.linspace(1.0, 0.1, n + 1, dtype=torch.float64)
        out = get(name).fn(den, x1, grid, cond={}, generator=None, callback=None, **options)
        errors.append(float((out - ref).abs().max()))
    assert all(e1 > e2 for e1, e2 in itertools.pairwise(errors)), errors
    slope = _slope(steps, errors)
    tolerance = 0.35 if order <= 2 else 0.5
    assert abs(slope - order) < tolerance, f"{name} on {schedule}: slope {slope:.2f}, errors {errors}"


def _covariance_tolerance(cov: torch.Tensor, n: int, k: float = 6.0) -> float:
    """``k`` standard errors of the Frobenius norm of a sample covariance (Gaussian approximation:
    ``Var(C_ij) = (C_ii C_jj + C_ij^2) / n``)."""
    d = torch.diagonal(cov)
    return k * math.sqrt(float((torch.outer(d, d) + cov**2).sum()) / n)


def _check_distribution(out: torch.Tensor, gm: GaussianMixture, n: int, label: str) -> None:
    assert out.shape == (n, gm.dim) and bool(torch.isfinite(out).all()), label
    cov = gm.covariance
    mean_err = float((out.mean(0) - gm.mean).norm())
    assert mean_err < 5 * math.sqrt(float(torch.trace(cov)) / n), f"{label}: mean off by {mean_err:.3f}"
    cov_err = float((out.T.cov() - cov).norm())
    assert cov_err < _covariance_tolerance(cov, n), f"{label}: covariance off by {cov_err:.3f}"
    ref = gm.sample(n, torch.Generator().manual_seed(1))
    floor = sum(sliced_wasserstein(gm.sample(n, torch.Generator().manual_seed(s)), ref) for s in (2, 3)) / 2
    sw = sliced_wasserstein(out, ref)
    assert sw < 1.6 * floor, f"{label}: sliced W2 {sw:.4f}, floor {floor:.4f}"


def _run_case(case, dim: int, n: int) -> None:
    name, schedule, prediction, steps, grid, grid_options, options = case
    gm = GaussianMixture.random(dim, seed=0)
    den = gm.denoiser(schedule, prediction)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, dim, generator=g, dtype=torch.float64)
    out = diffcore.sample(
        den, noise, sampler=name, steps=steps, grid=grid, grid_options=grid_options, generator=g, **options
    )
    _check_distribution(out, gm, n, f"{name}/{schedule}/{prediction}/{dim}D")


@pytest.mark.parametrize("case", SAMPLER_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in SAMPLER_CASES])
def test_sampler_reproduces_mixture_2d(case):
    _run_case(case, dim=2, n=2000)


@pytest.mark.parametrize("case", CASES_64D, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES_64D])
def test_sampler_reproduces_mixture_64d(case):
    _run_case(case, dim=64, n=1000)


def test_distribution_check_rejects_a_wrong_sampler():
    """The checks above have teeth: too few Euler steps on the EDM path (denoising from sigma = 8) fail."""
    gm = GaussianMixture.random(2, seed=0)
    den = gm.denoiser("edm", "eps")
    g = torch.Generator().manual_seed(0)
    out = diffcore.sample(
        den, torch.randn(2000, 2, generator=g, dtype=torch.float64), sampler="euler", steps=10
    )
    with pytest.raises(AssertionError):
        _check_distribution(out, gm, 2000, "coarse euler")
