"""DDIM inversion round trips with exact Gaussian-mixture denoisers, and latent interpolation."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.editing.inversion import decode, interpolate, invert
from diffcore.paths import schedules as S
from diffcore.paths.analytic import GaussianMixture

GM = GaussianMixture.random(2, seed=0)
X0 = GM.sample(128, torch.Generator().manual_seed(3))

# (schedule, prediction, grid): every family, and the zero-terminal-SNR end with v-prediction
CASES = [
    ("vp-cosine", "eps", "log-snr"),
    ("rectified-flow", "velocity", "uniform"),
    ("edm", "x0", "log-snr"),
    ("ztsnr", "v", "log-snr"),
]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _denoiser(schedule: str, prediction: str):
    sched = S.ZeroTerminalSNR(S.get("ddpm-linear")) if schedule == "ztsnr" else S.get(schedule)
    return GM.denoiser(sched, prediction)


def _round_trip_error(den, grid: str, steps: int, iters: int) -> float:
    z = invert(den, X0, steps, grid=grid, fixed_point_iters=iters)
    assert z.shape == X0.shape and bool(torch.isfinite(z).all())
    return float((decode(den, z, steps, grid=grid) - X0).abs().mean())


@pytest.mark.parametrize(("schedule", "prediction", "grid"), CASES)
def test_plain_inversion_error_falls_with_steps(schedule, prediction, grid):
    errors = [_round_trip_error(_denoiser(schedule, prediction), grid, n, 0) for n in (10, 40, 160)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.6 * errors[0], errors


@pytest.mark.parametrize(("schedule", "prediction", "grid"), CASES)
def test_fixed_point_inversion_reconstructs(schedule, prediction, grid):
    den = _denoiser(schedule, prediction)
    coarse, fine = _round_trip_error(den, grid, 20, 10), _round_trip_error(den, grid, 40, 10)
    assert fine < 1e-3 and fine < coarse, (coarse, fine)


def test_latent_is_gaussian_noise():
    """The inverted latent of data samples is (close to) the standard normal prior of the ODE."""
    den = _denoiser("rectified-flow", "velocity")
    x0 = GM.sample(2000, torch.Generator().manual_seed(5))
    z = invert(den, x0, 40, fixed_point_iters=5)
    assert float(z.mean(0).norm()) < 0.15
    assert torch.allclose(z.T.cov(), torch.eye(2, dtype=torch.float64), atol=0.15)


def test_trajectory_and_explicit_grid():
    den = _denoiser("vp-cosine", "eps")
    grid = torch.tensor([1.0, 0.7, 0.4, 0.1, 0.0], dtype=torch.float64)
    z, traj = invert(den, X0, grid=grid, return_trajectory=True)
    assert len(traj) == 5 and torch.equal(traj[0], X0) and torch.equal(traj[-1], z)
    with pytest.raises(ValueError, match="grid"):
        invert(den, X0, grid=torch.tensor([1.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="fixed_point_iters"):
        invert(den, X0, 10, fixed_point_iters=-1)
    with pytest.raises(ValueError, match="steps"):
        invert(den, X0, 0)


def test_slerp_and_lerp():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 8, 8, generator=g), torch.randn(3, 8, 8, generator=g)
    z2 = z2 * (z1.norm() / z2.norm())  # the great-circle identities below hold for equal norms
    out = interpolate(z1, z2, [0.0, 0.25, 0.5, 1.0])
    assert out.shape == (4, 3, 8, 8) and out.dtype == z1.dtype
    assert torch.allclose(out[0], z1, atol=1e-6) and torch.allclose(out[-1], z2, atol=1e-6)
    # slerp moves at constant angular speed on the great circle: equal angles to both ends at 0.5
    flat = out.reshape(4, -1).double()
    u, v = z1.reshape(-1).double(), z2.reshape(-1).double()

    def angle(a, b):
        return math.acos(float((a @ b) / (a.norm() * b.norm())))

    theta = angle(u, v)
    assert math.isclose(angle(u, flat[1]), 0.25 * theta, rel_tol=1e-5)
    assert math.isclose(angle(flat[2], u), angle(flat[2], v), rel_tol=1e-5)
    # slerp keeps the norm of equal-norm latents; lerp shrinks it towards the middle
    w = z2
    mid_s = interpolate(z1, w, [0.5])[0]
    mid_l = interpolate(z1, w, [0.5], method="lerp")[0]
    assert math.isclose(float(mid_s.norm()), float(z1.norm()), rel_tol=1e-5)
    assert float(mid_l.norm()) < 0.9 * float(z1.norm())
    assert torch.allclose(mid_l, 0.5 * (z1 + w))
    # parallel latents fall back to lerp (no division by sin 0)
    par = interpolate(z1, 2 * z1, [0.5])
    assert torch.allclose(par[0], 1.5 * z1, atol=1e-6)


def test_interpolate_errors():
    z = torch.zeros(4)
    with pytest.raises(ValueError, match="z1, z2"):
        interpolate(z, torch.zeros(5), [0.5])
    with pytest.raises(ValueError, match="method"):
        interpolate(z, z, [0.5], method="cubic")
    with pytest.raises(ValueError, match="alphas"):
        interpolate(z, z, [])
