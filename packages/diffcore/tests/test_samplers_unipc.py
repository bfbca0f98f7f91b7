"""UniPC against analytic answers: UniP-p has order p and UniC raises it by one, UniP reduces to
DPM-Solver++(2M)/(3M), the phi functions match their integrals, every schedule reaches the target,
and the loop runs on the meta device (no host-device synchronisation)."""

from __future__ import annotations

import functools
import math

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.denoiser import Denoiser
from diffcore.paths.schedules import ZeroTerminalSNR, get
from diffcore.sampling.unipc import phi_k, unipc_weights

GM = GaussianMixture.random(2, 3, seed=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def problem(run, lambda_grid):
    sched = get("vp-linear")
    den = GM.denoiser(sched, "eps")
    x = float(sched.sigma(torch.tensor(0.9))) * torch.randn(
        48, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return sched, den, x, run("dpm_solver_3", den, x, lambda_grid(sched, 0.9, 0.05, 300))


@pytest.mark.parametrize(
    "kw, order",
    [
        ({"order": 1}, 2),
        ({"order": 2}, 3),
        ({"order": 3}, 4),
        ({"order": 2, "variant": "bh1"}, 3),
        ({"order": 2, "use_corrector": False}, 2),
        ({"order": 3, "use_corrector": False}, 3),
        ({"order": 2, "predict_x0": False}, 3),
    ],
)
def test_convergence_order(run, lambda_grid, kw, order):
    """UniC-p on UniP-p has order p + 1 (Zhao et al. 2023, Theorem 3.3); UniP-p alone has order p."""
    sched, den, x, ref = problem(run, lambda_grid)
    errs = [
        float(
            (
                run("unipc", den, x, lambda_grid(sched, 0.9, 0.05, n, True), lower_order_final=False, **kw)
                - ref
            )
            .norm(dim=1)
            .mean()
        )
        for n in (40, 80)
    ]
    slope = math.log2(errs[0] / errs[1])
    assert order - 0.5 < slope < order + 0.7, (errs, slope)


@pytest.mark.parametrize("order, dpm", [(2, "dpmpp_2m"), (3, "dpmpp_3m")])
def test_predictor_alone_is_dpm_solver_pp(run, lambda_grid, order, dpm):
    """UniP-2 with B(h) = e^h - 1 and a = 1/2 is DPM-Solver++(2M); UniP-3 solves for the Taylor weights,
    which is DPM-Solver++(3M) with the Taylor-consistent D2 weight."""
    sched, den, x, _ = problem(run, lambda_grid)
    grid = lambda_grid(sched, 0.9, 0.05, 12)
    a = run("unipc", den, x, grid, order=order, use_corrector=False, variant="bh2")
    b = run(dpm, den, x, grid)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_phi_and_weights():
    for k in range(1, 5):
        for z in (-2.0, -0.3, -1e-3, 0.4):
            theta = torch.linspace(0, 1, 20001, dtype=torch.float64)
            exact = float(
                torch.trapezoid(torch.exp((1 - theta) * z) * theta ** (k - 1), theta)
            ) / math.factorial(k - 1)
            assert phi_k(k, z) == pytest.approx(exact, rel=1e-6)
    # the corrector's weights solve R a = b with R_ik = r_k^(i-1)
    rks = [-0.8, -1.7, 1.0]
    for variant in ("bh1", "bh2"):
        b_h, a = unipc_weights(3, 0.6, rks, variant, True)
        hh = -0.6
        b = [math.factorial(i) * hh * phi_k(i + 1, hh) / b_h for i in (1, 2, 3)]
        for i in range(3):
            assert sum(ak * rk**i for ak, rk in zip(a, rks)) == pytest.approx(b[i], rel=1e-10)


SCHEDULES = {
    "ddpm-linear": (get("ddpm-linear"), "eps"),
    "vp-cosine": (get("vp-cosine"), "v"),
    "rectified-flow": (get("rectified-flow"), "velocity"),
    "ztsnr": (ZeroTerminalSNR(get("ddpm-scaled-linear")), "v"),
    "edm": (get("edm"), "x0"),
}


@pytest.mark.parametrize("kw", [{}, {"order": 3, "variant": "bh1"}, {"predict_x0": False}])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_schedule_reaches_the_target(lambda_grid, schedule, kw):
    sched, pred = SCHEDULES[schedule]
    den = GM.denoiser(sched, pred)
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = None
    if schedule == "edm":
        grid = torch.cat([lambda_grid(sched, 1.0, 1e-3, 24), torch.zeros(1, dtype=torch.float64)])
    out = diffcore.sample(den, noise, sampler="unipc", steps=25, grid=grid, **kw)
    assert torch.isfinite(out).all()
    truth = GM.sample(1500, generator=torch.Generator().manual_seed(3))
    floor = sliced_wasserstein(GM.sample(1500, generator=torch.Generator().manual_seed(4)), truth)
    assert sliced_wasserstein(out, truth) < floor + 0.12


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_and_image_shapes(dtype):
    gm = GaussianMixture.random(12, 3, seed=2)
    den = gm.denoiser(get("vp-linear"), "eps")
    noise = torch.randn(32, 3, 2, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ref = diffcore.sample(den, noise, sampler="unipc", steps=10, order=3)
    out = diffcore.sample(den, noise.to(dtype), sampler="unipc", steps=10, order=3)
    assert out.dtype == dtype and out.shape == noise.shape
    assert float((out.double() - ref).abs().mean()) < (1e-4 if dtype == torch.float32 else 0.1)


@pytest.mark.parametrize("kw", [{}, {"order": 3}, {"predict_x0": False, "variant": "bh1"}])
def test_no_host_device_sync(kw):
    den = Denoiser(lambda x, t: 0.5 * x + t[:, None] * 0.0, get("ddpm-linear"), "eps")
    out = diffcore.sample(den, torch.empty(4, 2, device="meta"), sampler="unipc", steps=6, **kw)
    assert out.shape == (4, 2) and out.device.type == "meta"


def test_bad_options_are_named():
    den = GM.denoiser(get("vp-linear"), "eps")
    noise = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="order"):
        diffcore.sample(den, noise, sampler="unipc", steps=4, order=4)
    with pytest.raises(ValueError, match="variant"):
        diffcore.sample(den, noise, sampler="unipc", steps=4, variant="bh3")
