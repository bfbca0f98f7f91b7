"""Wrapped normal on the torus: normalisation, score vs finite differences, sampling, limits."""

import math

import numpy as np
import pytest
import torch
from diffcore.manifolds import torus
from scipy import integrate, stats


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.5, 2.0])
def test_density_integrates_to_one_per_coordinate(sigma):
    mu = torch.tensor([0.3], dtype=torch.float64)

    def p(x: float) -> float:
        return math.exp(
            float(torus.wrapped_normal_log_prob(torch.tensor([x], dtype=torch.float64), mu, sigma))
        )

    total, _ = integrate.quad(p, 0, 1, points=[0.3], limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.7, 3.0])
def test_score_matches_finite_differences(sigma):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 3, generator=g, dtype=torch.float64)
    mu = torch.rand(100, 3, generator=g, dtype=torch.float64)
    h = 1e-6
    score = torus.wrapped_normal_score(x, mu, sigma)
    for j in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[j] = h
        fd = (
            torus.wrapped_normal_log_prob(x + e, mu, sigma) - torus.wrapped_normal_log_prob(x - e, mu, sigma)
        ) / (2 * h)
        torch.testing.assert_close(score[:, j], fd, rtol=1e-5, atol=1e-5)


def test_score_per_sample_sigma_and_symmetries():
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(50, 2, generator=g, dtype=torch.float64)
    sigma = torch.rand(50, 1, generator=g, dtype=torch.float64) * 0.5 + 0.05
    torch.testing.assert_close(
        torus.wrapped_normal_score(mu, mu, sigma), torch.zeros(50, 2, dtype=torch.float64)
    )
    torch.testing.assert_close(
        torus.wrapped_normal_score(mu + 0.5, mu, sigma),
        torch.zeros(50, 2, dtype=torch.float64),
        atol=1e-9,
        rtol=0,
    )
    x = torch.rand(50, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        torus.wrapped_normal_score(x + 3.0, mu, sigma), torus.wrapped_normal_score(x, mu, sigma)
    )


def test_small_sigma_is_gaussian_score():
    x = torch.tensor([[0.51]], dtype=torch.float64)
    mu = torch.tensor([[0.5]], dtype=torch.float64)
    torch.testing.assert_close(torus.wrapped_normal_score(x, mu, 0.01), -(x - mu) / 0.01**2)


def test_samples_follow_density():
    mu = torch.full((20000, 1), 0.9, dtype=torch.float64)
    x = torus.wrapped_normal_sample(mu, 0.3, torch.Generator().manual_seed(2)).numpy()[:, 0]
    assert ((x >= 0) & (x < 1)).all()
    grid = np.linspace(0, 1, 4001)
    dens = np.exp(torus.wrapped_normal_log_prob(torch.from_numpy(grid)[:, None], mu[:1], 0.3).numpy())
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0)
    assert stats.kstest(x, lambda v: np.interp(v, grid, cdf / cdf[-1])).pvalue > 1e-3


def test_large_sigma_is_uniform_and_bad_sigma_rejected():
    x = torch.rand(10, 3, dtype=torch.float64)
    torch.testing.assert_close(
        torus.wrapped_normal_log_prob(x, torch.zeros(10, 3, dtype=torch.float64), 5.0),
        torch.zeros(10, dtype=torch.float64),
        atol=1e-8,
        rtol=0,
    )
    with pytest.raises(ValueError, match="sigma"):
        torus.wrapped_normal_score(x, x, 0.0)


def test_wrapped_difference_is_minimum_image():
    a = torch.tensor([0.05, 0.95, 0.5])
    b = torch.tensor([0.95, 0.05, 0.0])
    torch.testing.assert_close(torus.wrapped_difference(a, b), torch.tensor([0.1, -0.1, -0.5]))


def test_exp_of_log_returns_the_target_and_the_geodesic_is_the_shortest_straight_line():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(500, 3, generator=g, dtype=torch.float64)
    y = torch.rand(500, 3, generator=g, dtype=torch.float64)
    v = torus.log_map(x, y)
    assert (v >= -0.5).all() and (v < 0.5).all()
    assert torch.allclose(torus.wrapped_difference(torus.exp_map(x, v), y), torch.zeros_like(x), atol=1e-12)
    # log_x(y) is the shortest of all the differences y - x + k, k integer
    k = torch.arange(-2, 3, dtype=torch.float64)
    shortest = ((y - x)[..., None] + k).abs().min(-1).values
    assert torch.allclose(v.abs(), shortest, atol=1e-12)
    s = torch.rand(500, 1, generator=g, dtype=torch.float64)
    p = torus.geodesic(x, y, s)
    assert torch.allclose(torus.wrapped_difference(p, x), s * v, atol=1e-12)  # distance s |v| from x
    assert torch.allclose(torus.wrapped_difference(y, p), (1 - s) * v, atol=1e-12)  # and (1 - s) |v| to y
    assert torch.allclose(torus.geodesic(x, y, 0.0), x) and torch.allclose(
        torus.wrapped_difference(torus.geodesic(x, y, 1.0), y), torch.zeros_like(x), atol=1e-12
    )
    # maps commute with a common periodic translation
    tau = torch.rand(1, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(torus.log_map(torus.wrap(x + tau), torus.wrap(y + tau)), v, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_terms_are_the_per_coordinate_log_density_and_the_score(sigma):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, generator=g, dtype=torch.float64)
    mu = torch.rand(50, 3, generator=g, dtype=torch.float64)
    log_p, score = torus.wrapped_normal_terms(x, mu, sigma)
    assert log_p.shape == score.shape == (50, 3)
    assert torch.allclose(log_p.sum(-1), torus.wrapped_normal_log_prob(x, mu, sigma))
    # the log density of one coordinate, summed over images by hand
    k = torch.arange(-20, 21, dtype=torch.float64)
    dens = torch.exp(-0.5 * ((x[..., None] - mu[..., None] + k) / sigma) ** 2).sum(-1) / (
        sigma * math.sqrt(2 * math.pi)
    )
    assert torch.allclose(log_p, dens.log(), atol=1e-10)
    h = 1e-6
    fd = (
        torus.wrapped_normal_terms(x + h, mu, sigma)[0] - torus.wrapped_normal_terms(x - h, mu, sigma)[0]
    ) / (2 * h)
    assert torch.allclose(score, fd, rtol=1e-5, atol=1e-5)
