"""Discrete schedules, corruption, time sampling and categorical shaping against their definitions."""

import math

import pytest
import torch
from diffcore.discrete import (
    available_discrete_schedules,
    get_discrete_schedule,
    mask_tokens,
    sample_categorical,
    sample_times,
    shape_log_probs,
    subs_log_probs,
    uniform_resample,
)

NAMES = available_discrete_schedules()


@pytest.mark.parametrize("name", NAMES)
def test_schedule_endpoints_derivative_and_inverse(name):
    s = get_discrete_schedule(name)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a = s.alpha(t)
    assert float(a[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(a[-1]) == pytest.approx(0.0, abs=1e-12)
    assert bool((a[1:] <= a[:-1] + 1e-15).all())
    # derivative against central differences
    ti = t[1:-1]
    h = 1e-6
    fd = (s.alpha(ti + h) - s.alpha(ti - h)) / (2 * h)
    torch.testing.assert_close(s.d_alpha(ti), fd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.t_from_alpha(a), t, rtol=0, atol=1e-7)
    torch.testing.assert_close(s.one_minus_alpha(t), 1 - a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_masked_weight_is_finite_near_zero(name):
    s = get_discrete_schedule(name)
    w = s.masked_weight(torch.tensor([1e-12, 1e-6, 0.5, 1.0], dtype=torch.float64))
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="log-linear"):
        get_discrete_schedule("nope")


def test_corruption_rates():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (4000, 32), generator=g)
    keep = torch.tensor([0.2, 0.7]).repeat(2000)
    xt = mask_tokens(x0, keep, mask_id=5, generator=g)
    frac = (xt == x0).float().mean(-1)
    assert float(frac[0::2].mean()) == pytest.approx(0.2, abs=0.01)
    assert float(frac[1::2].mean()) == pytest.approx(0.7, abs=0.01)
    assert bool(((xt == x0) | (xt == 5)).all())
    xu = uniform_resample(x0, keep, vocab_size=5, generator=g)
    same = (xu == x0).float().mean(-1)
    # P(same) = alpha + (1 - alpha) / K
    assert float(same[0::2].mean()) == pytest.approx(0.2 + 0.8 / 5, abs=0.01)


def test_antithetic_times_are_uniform_and_clipped():
    g = torch.Generator().manual_seed(1)
    t = sample_times(1000, generator=g, dtype=torch.float64)
    # stratified: exactly one time in each 1/1000 bin
    counts = torch.histc(t, bins=1000, min=0, max=1)
    assert bool((counts == 1).all())
    tc = sample_times((50, 8), t_min=0.3, t_max=0.8, generator=g)
    assert tc.shape == (50, 8) and float(tc.min()) >= 0.3 and float(tc.max()) <= 0.8


def test_subs_zero_mask_and_carry_over():
    logits = torch.randn(2, 4, 6)
    x_t = torch.tensor([[5, 1, 5, 3], [0, 5, 5, 5]])
    lp = subs_log_probs(logits, x_t, mask_id=5)
    assert bool(torch.isinf(lp[..., 5]).all())
    assert float(lp[0, 1, 1]) == 0.0 and float(lp[1, 0, 0]) == 0.0
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 4))


def test_top_p_keeps_smallest_nucleus_and_temperature():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    out = shape_log_probs(p.log(), top_p=0.8).exp()
    torch.testing.assert_close(out, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    cold = shape_log_probs(p.log(), temperature=0.5).exp()
    torch.testing.assert_close(cold, p**2 / (p**2).sum())
    with pytest.raises(ValueError, match="top_p"):
        shape_log_probs(p.log(), top_p=0.0)


def test_gumbel_sampling_matches_probabilities():
    g = torch.Generator().manual_seed(2)
    p = torch.tensor([0.6, 0.25, 0.1, 0.05])
    draws = sample_categorical(p.log().expand(200000, 4), g)
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    assert float((freq - p.double()).abs().max()) < 4 * math.sqrt(0.25 / 200000) * 2
