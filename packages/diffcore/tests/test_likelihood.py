"""Exact likelihood through the probability-flow ODE against closed forms."""

import math

import pytest
import torch
from diffcore.likelihood import divergence, log_likelihood
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture


def _bpd(log_prob, dim):
    return -log_prob / (dim * math.log(2))


@pytest.mark.parametrize("name,t_min", [("vp-linear", 1e-5), ("vp-cosine", 1e-5), ("rectified-flow", 0.0)])
def test_gaussian_likelihood_matches_the_closed_form(name, t_min):
    gm = GaussianMixture.gaussian(torch.tensor([0.5, -0.3, 0.1]), torch.tensor([0.2, 0.6, 1.3]))
    x = gm.sample(8, torch.Generator().manual_seed(0))
    result = log_likelihood(gm.denoiser(schedules.get(name), "eps"), x, t_min=t_min)
    truth = _bpd(gm.log_prob(x), 3)
    assert torch.allclose(result.bpd, truth, rtol=0.01, atol=0.005), (result.bpd, truth)


def test_gaussian_mixture_likelihood_with_velocity_prediction():
    gm = GaussianMixture.random(2, components=3, seed=3)
    x = gm.sample(8, torch.Generator().manual_seed(1))
    result = log_likelihood(gm.denoiser("rectified-flow", "velocity"), x, t_min=0.0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(result.log_prob, gm.log_prob(x), rtol=0.01, atol=0.01)


def test_hutchinson_estimate_is_unbiased_in_higher_dimension():
    dim = 16
    gm = GaussianMixture.gaussian(torch.zeros(dim), torch.linspace(0.2, 1.5, dim))
    x = gm.sample(16, torch.Generator().manual_seed(2))
    den = gm.denoiser("rectified-flow", "eps")
    est = log_likelihood(
        den,
        x,
        t_min=0.0,
        method="rk4",
        steps=10,
        divergence_method="hutchinson",
        probes=4,
        generator=torch.Generator().manual_seed(3),
    )
    truth = gm.log_prob(x)
    error = est.log_prob - truth
    assert float(error.abs().max()) < 3.0  # single estimates scatter ...
    assert abs(float(error.mean())) < 0.4  # ... around the truth: the estimator is unbiased


def test_exact_divergence_of_a_linear_field():
    a = torch.randn(4, 4, dtype=torch.float64)
    _v, div = divergence(lambda x, t: x @ a.T, torch.randn(3, 4, dtype=torch.float64), torch.tensor(0.0))
    torch.testing.assert_close(div, torch.full((3,), float(torch.trace(a)), dtype=torch.float64))


def test_dequantization_offset_and_errors():
    gm = GaussianMixture.gaussian(torch.zeros(2), torch.ones(2))
    x = gm.sample(4, torch.Generator().manual_seed(0))
    den = gm.denoiser("rectified-flow", "eps")
    plain = log_likelihood(den, x, t_min=0.0, method="rk4", steps=5)
    deq = log_likelihood(den, x, t_min=0.0, method="rk4", steps=5, dequantization_bits=8, data_range=2.0)
    torch.testing.assert_close(deq.bpd - plain.bpd, torch.full_like(plain.bpd, 7.0))
    with pytest.raises(ValueError, match="t_min"):
        log_likelihood(den, x, t_min=1.0)
    with pytest.raises(ValueError, match="method"):
        log_likelihood(den, x, method="magic")
