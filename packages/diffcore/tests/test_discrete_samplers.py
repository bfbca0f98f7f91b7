"""Samplers driven by exact denoisers reproduce the data distribution (chi-square tests)."""

import pytest
import torch
from diffcore.discrete import (
    EnumerableDistribution,
    get_discrete_schedule,
    masked_ancestral_sample,
    masked_first_hitting_sample,
    time_grid,
    uniform_ancestral_sample,
)
from scipy.stats import chisquare

K, L, N = 3, 3, 6000


def _correlated() -> EnumerableDistribution:
    g = torch.Generator().manual_seed(0)
    return EnumerableDistribution(torch.rand((K,) * L, generator=g) ** 3 + 0.02)


def _factorised() -> EnumerableDistribution:
    return EnumerableDistribution.factorised(
        torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.45, 0.1, 0.45]])
    )


def _chi2_pvalue(d: EnumerableDistribution, x: torch.Tensor) -> float:
    counts = torch.bincount(d.index(x), minlength=len(d.states)).double()
    expected = d.probs / d.probs.sum() * counts.sum()
    return float(chisquare(counts.numpy(), expected.numpy()).pvalue)


def _total_variation(d: EnumerableDistribution, x: torch.Tensor) -> float:
    freq = torch.bincount(d.index(x), minlength=len(d.states)).double() / len(x)
    return 0.5 * float((freq - d.probs).abs().sum())


def test_first_hitting_is_exact_on_a_correlated_distribution():
    d = _correlated()
    g = torch.Generator().manual_seed(1)
    x = masked_first_hitting_sample(
        d.masked_denoiser(),
        torch.full((N, L), K),
        schedule=get_discrete_schedule("cosine"),
        mask_id=K,
        generator=g,
    )
    assert _chi2_pvalue(d, x) > 1e-3


@pytest.mark.parametrize("steps", [1, 4])
def test_ancestral_is_exact_on_a_factorised_distribution_for_any_step_count(steps):
    d = _factorised()
    g = torch.Generator().manual_seed(2)
    x = masked_ancestral_sample(
        d.masked_denoiser(),
        torch.full((N, L), K),
        time_grid(steps),
        schedule=get_discrete_schedule("log-linear"),
        mask_id=K,
        generator=g,
    )
    assert _chi2_pvalue(d, x) > 1e-3


def test_one_step_ancestral_is_wrong_on_a_correlated_distribution_and_many_steps_fix_it():
    d = _correlated()
    s = get_discrete_schedule("log-linear")
    g = torch.Generator().manual_seed(3)
    one = masked_ancestral_sample(
        d.masked_denoiser(), torch.full((N, L), K), time_grid(1), schedule=s, mask_id=K, generator=g
    )
    many = masked_ancestral_sample(
        d.masked_denoiser(), torch.full((N // 2, L), K), time_grid(32), schedule=s, mask_id=K, generator=g
    )
    assert _chi2_pvalue(d, one) < 1e-6  # one step samples the product of marginals
    assert _total_variation(d, many) < _total_variation(d, one) / 2


def test_prediction_cache_gives_same_tokens_with_fewer_calls():
    d = _correlated()
    s = get_discrete_schedule("log-linear")
    calls = {"n": 0}
    base = d.masked_denoiser()

    def counting(x, t):
        calls["n"] += 1
        return base(x, t)

    out = []
    for cache in (True, False):
        calls["n"] = 0
        g = torch.Generator().manual_seed(4)
        x = masked_ancestral_sample(
            counting,
            torch.full((8, L), K),
            time_grid(64),
            schedule=s,
            mask_id=K,
            cache_predictions=cache,
            generator=g,
        )
        out.append((x, calls["n"]))
    assert torch.equal(out[0][0], out[1][0])
    assert out[1][1] == 64 and out[0][1] < 32


def test_ancestral_keeps_given_tokens_infilling():
    d = _correlated()
    g = torch.Generator().manual_seed(5)
    start = torch.full((N, L), K)
    start[:, 0] = 2
    x = masked_ancestral_sample(
        d.masked_denoiser(),
        start,
        time_grid(1),
        schedule=get_discrete_schedule("log-linear"),
        mask_id=K,
        generator=g,
    )
    assert bool((x[:, 0] == 2).all())
    # one step from one given token: each other position follows p(x^l | x^0 = 2) exactly
    joint = d.probs.view(K, K, K)[2]
    cond1 = joint.sum(1) / joint.sum()
    freq1 = torch.bincount(x[:, 1], minlength=K).double() / N
    assert float((freq1 - cond1).abs().max()) < 0.03


def test_uniform_ancestral_is_exact_on_a_factorised_distribution():
    d = _factorised()
    s = get_discrete_schedule("log-linear")
    g = torch.Generator().manual_seed(6)
    x = uniform_ancestral_sample(
        d.uniform_denoiser(s), torch.randint(0, K, (N, L), generator=g), time_grid(8), schedule=s, generator=g
    )
    assert _chi2_pvalue(d, x) > 1e-3


def test_uniform_ancestral_many_steps_on_correlated():
    d = _correlated()
    s = get_discrete_schedule("cosine")
    g = torch.Generator().manual_seed(7)
    few = uniform_ancestral_sample(
        d.uniform_denoiser(s),
        torch.randint(0, K, (N // 2, L), generator=g),
        time_grid(1),
        schedule=s,
        generator=g,
    )
    many = uniform_ancestral_sample(
        d.uniform_denoiser(s),
        torch.randint(0, K, (N // 2, L), generator=g),
        time_grid(24),
        schedule=s,
        generator=g,
    )
    assert _total_variation(d, many) < _total_variation(d, few) / 2


def test_low_temperature_concentrates_on_the_mode():
    d = _factorised()
    g = torch.Generator().manual_seed(8)
    x = masked_first_hitting_sample(
        d.masked_denoiser(),
        torch.full((500, L), K),
        schedule=get_discrete_schedule("log-linear"),
        mask_id=K,
        temperature=0.05,
        generator=g,
    )
    assert bool((x == torch.tensor([0, 2, 0])).all(-1).float().mean() > 0.45)
