"""The continuous-time NELBO with the exact denoiser equals the entropy (masked and uniform, every schedule)."""

import itertools

import numpy as np
import pytest
import torch
from diffcore.discrete import (
    EnumerableDistribution,
    available_discrete_schedules,
    get_discrete_schedule,
    mask_tokens,
    masked_nelbo_terms,
    sample_times,
    uniform_nelbo_terms,
    uniform_resample,
)

K, L = 3, 3


def _correlated() -> EnumerableDistribution:
    g = torch.Generator().manual_seed(0)
    return EnumerableDistribution(torch.rand((K,) * L, generator=g) ** 3)


def _quadrature(n: int, power: int):
    """Gauss-Legendre nodes on [0, 1] after t = u^power (clusters nodes near t = 0)."""
    u, w = np.polynomial.legendre.leggauss(n)
    u, w = (u + 1) / 2, w / 2
    return [(float(ui**power), float(wi * power * ui ** (power - 1))) for ui, wi in zip(u, w)]


def _masked_nelbo_exact(d: EnumerableDistribution, schedule) -> float:
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=L)), dtype=torch.bool)
    n = len(d.states)
    x0 = d.states.repeat_interleave(len(patterns), 0)
    pat = patterns.repeat(n, 1)
    xt = torch.where(pat, torch.full_like(x0, K), x0)
    p_x0 = d.probs.repeat_interleave(len(patterns))
    log_probs = d.masked_denoiser()(xt, torch.zeros(len(xt)))
    m = pat.sum(-1)
    total = 0.0
    for t, w in _quadrature(60, 2):
        a = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
        q = a ** (L - m) * (1 - a) ** m
        terms = masked_nelbo_terms(log_probs, x0, xt, torch.full((len(xt),), t), schedule, K).double().sum(-1)
        total += w * float((p_x0 * q * terms).sum())
    return total


def _uniform_nelbo_exact(d: EnumerableDistribution, schedule) -> float:
    n = len(d.states)
    x0, xt = d.states.repeat_interleave(n, 0), d.states.repeat(n, 1)
    p_x0 = d.probs.repeat_interleave(n)
    den = d.uniform_denoiser(schedule)
    total = 0.0
    for t, w in _quadrature(80, 3):
        a = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
        tt = torch.full((len(xt),), t, dtype=torch.float64)
        q = torch.where(x0 == xt, a + (1 - a) / K, (1 - a) / K).prod(-1)
        terms = uniform_nelbo_terms(den(xt, tt), x0, xt, tt, schedule).sum(-1)
        total += w * float((p_x0 * q * terms).sum())
    return total


@pytest.mark.parametrize("name", available_discrete_schedules())
def test_masked_nelbo_with_exact_denoiser_is_entropy(name):
    d = _correlated()
    assert _masked_nelbo_exact(d, get_discrete_schedule(name)) == pytest.approx(d.entropy(), rel=1e-5)


@pytest.mark.parametrize("name", available_discrete_schedules())
def test_uniform_nelbo_with_exact_denoiser_is_entropy(name):
    d = _correlated()
    assert _uniform_nelbo_exact(d, get_discrete_schedule(name)) == pytest.approx(d.entropy(), rel=1e-5)


def test_nelbo_of_a_wrong_denoiser_exceeds_entropy():
    d = _correlated()
    wrong = EnumerableDistribution.factorised(torch.full((L, K), 1.0 / K))
    s = get_discrete_schedule("log-linear")
    log_probs_fn = wrong.uniform_denoiser(s)
    n = len(d.states)
    x0, xt = d.states.repeat_interleave(n, 0), d.states.repeat(n, 1)
    p_x0 = d.probs.repeat_interleave(n)
    total = 0.0
    for t, w in _quadrature(80, 3):
        tt = torch.full((len(xt),), t, dtype=torch.float64)
        q = torch.where(x0 == xt, (1 - t) + t / K, t / K).prod(-1)
        total += w * float(
            (p_x0 * q * uniform_nelbo_terms(log_probs_fn(xt, tt), x0, xt, tt, s).sum(-1)).sum()
        )
    # a uniform model's bound is the uniform code length L log K, above the entropy
    assert total == pytest.approx(L * np.log(K), rel=1e-4)
    assert total > d.entropy() + 0.1


@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_monte_carlo_nelbo_estimator_is_unbiased(process):
    """The training estimator (antithetic t, sampled x_t) averages to the entropy within its standard error."""
    d = _correlated()
    s = get_discrete_schedule("log-linear")
    g = torch.Generator().manual_seed(3)
    n = 40000
    x0 = d.sample(n, g)
    t = sample_times(n, generator=g, dtype=torch.float64)
    if process == "masked":
        xt = mask_tokens(x0, s.alpha(t), mask_id=K, generator=g)
        terms = masked_nelbo_terms(d.masked_denoiser()(xt, t.float()), x0, xt, t, s, K).double().sum(-1)
    else:
        xt = uniform_resample(x0, s.alpha(t), vocab_size=K, generator=g)
        terms = uniform_nelbo_terms(d.uniform_denoiser(s)(xt, t), x0, xt, t, s).sum(-1)
    mean, se = float(terms.mean()), float(terms.std() / n**0.5)
    assert abs(mean - d.entropy()) < 4 * se + 1e-3
