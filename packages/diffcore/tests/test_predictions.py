"""Every conversion between parameterisations round-trips, for every schedule, at inner and edge times."""

import math

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.denoiser import Denoiser
from diffcore.paths.predictions import PREDICTIONS, PathCoefficients, convert, from_x0_eps, to_x0_eps

SCHEDULES = schedules.available()


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("source", PREDICTIONS)
def test_roundtrip_through_x0_eps(name, source):
    sched = schedules.get(name)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.05, 0.3, 0.77, 0.95], dtype=torch.float64)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, generator=g, dtype=torch.float64)
    c = PathCoefficients.at(sched, t, 2)
    xt = c.alpha * x0 + c.sigma * eps
    pred = from_x0_eps(x0, eps, source, c)
    x0_back, eps_back = to_x0_eps(pred, source, xt, c)
    torch.testing.assert_close(x0_back, x0, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(eps_back, eps, rtol=1e-7, atol=1e-7)
    for target in PREDICTIONS:
        torch.testing.assert_close(convert(pred, source, target, xt, c), from_x0_eps(x0, eps, target, c))


def test_rectified_flow_velocity_is_eps_minus_x0():
    sched = schedules.get("rectified-flow")
    t = torch.tensor([0.4], dtype=torch.float64)
    c = PathCoefficients.at(sched, t, 2)
    x0, eps = torch.randn(1, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)
    torch.testing.assert_close(from_x0_eps(x0, eps, "velocity", c), eps - x0)


def _edge_schedule(name: str) -> schedules.Schedule:
    if name == "zt":
        return schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))
    return schedules.get(name)


@pytest.mark.parametrize("name", [*SCHEDULES, "zt"])
@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_edges_give_the_exact_predictions(name, source, t):
    """At t = 0 and t = 1 a network that predicts ``source`` exactly for standard-normal data gives, through the
    Denoiser, every other prediction's exact value. With ``D = alpha^2 + sigma^2`` the posterior of N(0, I) data
    is ``x0 = alpha x / D``, ``eps = sigma x / D``, so ``v = alpha eps - sigma x0 = 0``,
    ``velocity = (d_alpha alpha + d_sigma sigma) x / D`` and ``score = -x / D``, except where ``sigma = 0``: there
    the score is set to 0 (predictions.py: it is ``-eps / sigma``).

    The network's output is rounded to ``x``'s dtype, and a conversion that divides by alpha or sigma amplifies
    that rounding by ``max(alpha / sigma, sigma / alpha)`` (eps -> x0 at alpha = 6e-5 for ddpm-cosine at t = 1,
    x0 -> eps at sigma = 0.01 for VE at t = 0); the score then divides by sigma, the velocity multiplies by the
    derivatives. The tolerance is that error bound, times 4 (the worst case measured is 1.06 of it); in float64
    it is ~1e-13 of the data scale almost everywhere."""
    sched = _edge_schedule(name)
    a, s, da, ds = (float(c) for c in sched.coefficients(torch.tensor(t, dtype=torch.float64)))
    d = a * a + s * s

    def exact(x, tt):  # the exact prediction of kind `source`
        c = PathCoefficients.at(sched, tt.double(), x.ndim)
        xd = x.double()
        x0 = c.alpha * xd / (c.alpha**2 + c.sigma**2)
        eps = c.sigma * xd / (c.alpha**2 + c.sigma**2)
        return from_x0_eps(x0, eps, source, c).to(x.dtype)

    den = Denoiser(exact, sched, source)
    amplification = 1 + max(a / s if s > 0 else 0.0, s / a if a > 0 else 0.0)
    target_scale = {"x0": 1.0, "eps": 1.0, "v": max(a, s), "velocity": abs(da) + abs(ds)}
    target_scale["score"] = 1 / s if s > 0 else 1.0
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        x = (torch.randn(16, 4, generator=g, dtype=torch.float64) * max(s, 1.0)).to(dtype)
        xd = x.double()
        expected = {
            "x0": a * xd / d,
            "eps": s * xd / d,
            "v": torch.zeros_like(xd),
            "velocity": (da * a + ds * s) * xd / d,
            "score": -xd / d if s > 0 else torch.zeros_like(xd),
        }
        unit = torch.finfo(dtype).eps * float(xd.abs().max()) / math.sqrt(d) * amplification
        for kind in PREDICTIONS:
            out = den.predict(kind, x, t)
            assert out.dtype == dtype and bool(torch.isfinite(out).all()), (kind, dtype)
            error = float((out.double() - expected[kind]).abs().max())
            assert error <= 4 * unit * target_scale[kind], (kind, dtype, error, unit * target_scale[kind])


def test_bad_prediction_name_is_rejected():
    with pytest.raises(ValueError, match="prediction"):
        Denoiser(lambda x, t: x, "vp-cosine", "noise")


def test_network_output_shape_is_checked():
    den = Denoiser(lambda x, t: x[:, :1], "vp-cosine", "eps")
    with pytest.raises(ValueError, match="network output"):
        den.x0(torch.randn(2, 3), 0.5)


def test_denoiser_matches_exact_gaussian_posterior():
    """For x0 ~ N(0, s^2 I) the exact eps-prediction is sigma x / (alpha^2 s^2 + sigma^2); x0 = Tweedie."""
    s2 = 0.25
    sched = schedules.get("vp-cosine")

    def exact_eps(x, t):
        c = PathCoefficients.at(sched, t.double(), x.ndim)
        return (c.sigma * x / (c.alpha**2 * s2 + c.sigma**2)).to(x.dtype)

    den = Denoiser(exact_eps, sched, "eps")
    x = torch.randn(3, 2, dtype=torch.float64)
    c = PathCoefficients.at(sched, torch.tensor(0.6, dtype=torch.float64), 2)
    expected_x0 = c.alpha * s2 * x / (c.alpha**2 * s2 + c.sigma**2)
    torch.testing.assert_close(den.x0(x, 0.6), expected_x0)
    torch.testing.assert_close(den.score(x, 0.6), -x / (c.alpha**2 * s2 + c.sigma**2))
