"""Every conversion between parameterisations round-trips, for every schedule, at inner and edge times."""

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


@pytest.mark.parametrize("name", [*SCHEDULES, "zt"])
@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_edges_are_finite(name, source, t):
    sched = (
        schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))
        if name == "zt"
        else schedules.get(name)
    )

    def exact(x, tt):  # the exact prediction of kind `source` for standard-normal data
        c = PathCoefficients.at(sched, tt.double(), x.ndim)
        xd = x.double()
        x0 = c.alpha * xd / (c.alpha**2 + c.sigma**2)
        eps = c.sigma * xd / (c.alpha**2 + c.sigma**2)
        return from_x0_eps(x0, eps, source, c).to(x.dtype)

    den = Denoiser(exact, sched, source)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        sig = float(sched.sigma(torch.tensor(t, dtype=torch.float64)))
        x = (torch.randn(2, 4) * max(sig, 1.0)).to(dtype)
        for kind in PREDICTIONS:
            out = den.predict(kind, x, t)
            assert torch.isfinite(out).all(), (name, source, kind, t, dtype)


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
