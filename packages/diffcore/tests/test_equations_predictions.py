"""Each parameterisation is its formula (not only a round trip, which a symmetric slip survives): v = alpha eps -
sigma x0 (Salimans & Ho 2022, Sec. 4), the velocity d_alpha x0 + d_sigma eps, the score -eps / sigma (Tweedie), and
each inverse map to (x0, eps) written out; the edges alpha = 0 and sigma = 0 give the documented zeros."""

from __future__ import annotations

import pytest
import torch
from diffcore.paths import predictions, schedules
from diffcore.paths.predictions import (
    AffineX0Eps,
    PathCoefficients,
    affine_x0_eps,
    from_x0_eps,
    lincomb,
    to_x0_eps,
)

F64 = torch.float64


def _case(name: str = "vp-linear", t: float = 0.4):
    sched = schedules.get(name)
    c = PathCoefficients.at(sched, torch.tensor([t, 0.7], dtype=F64), 2)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, generator=g, dtype=F64), torch.randn(2, 3, generator=g, dtype=F64)
    return c, x0, eps, c.alpha * x0 + c.sigma * eps


@pytest.mark.parametrize("name", ["vp-linear", "rectified-flow", "edm"])
def test_each_prediction_is_its_formula(name):
    c, x0, eps, _ = _case(name)
    a, s, da, ds = c.alpha, c.sigma, c.d_alpha, c.d_sigma
    expected = {
        "eps": eps,
        "x0": x0,
        "v": a * eps - s * x0,
        "velocity": da * x0 + ds * eps,
        "score": -eps / s,
    }
    for kind, value in expected.items():
        torch.testing.assert_close(from_x0_eps(x0, eps, kind, c), value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["vp-linear", "rectified-flow", "edm"])
def test_each_inverse_map_is_its_formula(name):
    """eps: x0 = (x - sigma eps) / alpha; x0: eps = (x - alpha x0) / sigma; v: x0 = (alpha x - sigma v) / (alpha^2 +
    sigma^2), eps = (sigma x + alpha v) / (alpha^2 + sigma^2); velocity: Cramer's rule on [alpha sigma; d_alpha
    d_sigma]; score: eps = -sigma s, x0 = (x + sigma^2 s) / alpha."""
    c, x0, eps, x = _case(name)
    a, s, da, ds = c.alpha, c.sigma, c.d_alpha, c.d_sigma
    v, u, score = a * eps - s * x0, da * x0 + ds * eps, -eps / s
    n, det = a * a + s * s, a * ds - s * da
    cases = {
        "eps": (eps, (x - s * eps) / a, eps),
        "x0": (x0, x0, (x - a * x0) / s),
        "v": (v, (a * x - s * v) / n, (s * x + a * v) / n),
        "velocity": (u, (ds * x - s * u) / det, (a * u - da * x) / det),
        "score": (score, (x + s * s * score) / a, -s * score),
    }
    for kind, (pred, x0_expected, eps_expected) in cases.items():
        got_x0, got_eps = to_x0_eps(pred, kind, x, c)
        torch.testing.assert_close(got_x0, x0_expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_eps, eps_expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_x0, x0, rtol=1e-9, atol=1e-10)


def test_float_coefficients_give_the_same_maps_as_tensors():
    """Samplers pass python floats (one time for the batch): the same formulas, zeros where a divisor is 0."""
    x, out = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    for a, s, da, ds in ((0.6, 0.8, -0.3, 0.9), (0.0, 1.0, -1.0, 1.0), (1.0, 0.0, -1.0, 1.0)):
        cf = PathCoefficients(a, s, da, ds)
        ct = PathCoefficients(*(torch.tensor(v, dtype=F64) for v in (a, s, da, ds)))
        for kind in predictions.PREDICTIONS:
            for got, want in zip(to_x0_eps(out, kind, x, cf), to_x0_eps(out, kind, x, ct)):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_edges_give_zero_where_a_divisor_vanishes():
    """alpha = 0 (zero terminal SNR): an eps or score output says nothing about x0, which is set to 0; sigma = 0
    (t = 0): an x0 output says nothing about eps, set to 0, and the score is 0."""
    x, out = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    at_noise = PathCoefficients(torch.zeros(()), torch.ones(()), -torch.ones(()), torch.ones(()))
    at_data = PathCoefficients(torch.ones(()), torch.zeros(()), -torch.ones(()), torch.ones(()))
    for kind in ("eps", "score"):
        assert torch.equal(to_x0_eps(out, kind, x, at_noise)[0], torch.zeros_like(x))
    x0, eps = to_x0_eps(out, "x0", x, at_data)
    assert torch.equal(x0, out) and torch.equal(eps, torch.zeros_like(x))
    assert torch.equal(from_x0_eps(out, out, "score", at_data), torch.zeros_like(x))
    # the velocity map is singular only where alpha d_sigma = sigma d_alpha, e.g. EDM at t = 0
    x0, eps = to_x0_eps(out, "velocity", x, PathCoefficients(1.0, 0.0, 0.0, 80.0))
    torch.testing.assert_close(x0, x) and torch.testing.assert_close(eps, out / 80.0)
    assert predictions._safe_inv(0.0) == 0.0 and predictions._safe_inv(4.0) == 0.25


def test_fold_and_lincomb_compute_their_linear_combinations():
    f = AffineX0Eps(0.5, -2.0, 3.0, 0.25)
    k_x, k_out = f.fold(1.5, 2.0, -1.0)
    assert (k_x, k_out) == (1.5 + 2.0 * 0.5 - 1.0 * 3.0, 2.0 * -2.0 - 1.0 * 0.25)
    x, y = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    for a, b in (
        (0.0, 0.0),
        (0.0, 2.0),
        (1.0, 0.0),
        (3.0, 0.0),
        (1.0, -0.5),
        (2.0, 3.0),
        (torch.tensor(2.0, dtype=F64), 3.0),
    ):
        torch.testing.assert_close(lincomb(a, x, b, y), a * x + b * y, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(lincomb(2.0, x, 3.0, y.float()), 2 * x + 3 * y.float().double())


def test_affine_map_matches_to_x0_eps_and_rejects_unknown_kinds():
    c, x0, eps, x = _case("vp-cosine")
    for kind in predictions.PREDICTIONS:
        pred = from_x0_eps(x0, eps, kind, c)
        f = affine_x0_eps(kind, c)
        torch.testing.assert_close(f.x0_x * x + f.x0_out * pred, x0, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(f.eps_x * x + f.eps_out * pred, eps, rtol=1e-9, atol=1e-10)
    for fn in (lambda: affine_x0_eps("noise", c), lambda: from_x0_eps(x0, eps, "noise", c)):
        with pytest.raises(ValueError, match="prediction"):
            fn()
    with pytest.raises(ValueError, match="prediction"):
        predictions.convert(x0, "eps", "noise", x, c)
    assert predictions.convert(x0, "v", "v", x, c) is x0


def test_path_coefficients_broadcast_per_sample_and_cast():
    sched = schedules.get("vp-cosine")
    t = torch.tensor([0.2, 0.6], dtype=F64)
    c = PathCoefficients.at(sched, t, 4, torch.float32)
    assert c.alpha.shape == (2, 1, 1, 1) and c.alpha.dtype == torch.float32
    torch.testing.assert_close(c.sigma.reshape(-1), sched.sigma(t).float())
    c0 = PathCoefficients.at(sched, torch.tensor(0.3, dtype=F64), 3)
    assert c0.alpha.shape == ()


def test_lincomb_of_mixed_dtypes_promotes_like_torch():
    x, y = torch.randn(3, 2), torch.randn(3, 2, dtype=F64)
    out = lincomb(2.0, x, 3.0, y)
    assert out.dtype == F64
    torch.testing.assert_close(out, 2 * x.double() + 3 * y)
