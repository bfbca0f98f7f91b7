"""The precise NELBO estimate: the masked-count form equals the continuous-time NELBO (exact enumeration)."""

import itertools
import math

import pytest
import torch
from diff_language.metrics import estimate_nelbo, paired_difference, validation_nelbo
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.objective import bd3_loss_terms
from diffcore.discrete import subs_log_probs


def _model(block_size: int, seq_len: int = 4, seed: int = 0) -> BD3LM:
    torch.manual_seed(seed)
    cfg = BD3LMConfig(vocab_size=6, seq_len=seq_len, block_size=block_size, dim=16, n_layers=1, n_heads=2)
    model = BD3LM(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so the conditionals really differ
        for p in model.parameters():
            p.mul_(4.0)
    return model


@torch.no_grad()
def _exact_nelbo(model: BD3LM, x0: torch.Tensor) -> torch.Tensor:
    """Per-window NELBO (nats/token) by enumerating every masked subset of every block (B,)."""
    b, n = x0.shape
    size = model.config.block_size
    total = torch.zeros(b, dtype=torch.float64)
    for start in range(0, n, size):
        for k in range(1, size + 1):
            subsets = list(itertools.combinations(range(start, start + size), k))
            for subset in subsets:
                x_t = x0.clone()
                x_t[:, list(subset)] = model.mask_id
                lp = subs_log_probs(model(x_t, x0=x0), x_t, model.mask_id)
                nll = -lp.gather(-1, x0[..., None]).squeeze(-1).double()
                # the continuous-time weight integrates to 1/k given k masked tokens (any schedule)
                total += nll[:, list(subset)].sum(-1) / k / len(subsets)
    return total / n


@pytest.mark.parametrize("block_size", [2, 4])
def test_count_form_estimate_matches_exact_enumeration(block_size):
    model = _model(block_size)
    windows = torch.randint(0, 5, (16, 4), generator=torch.Generator().manual_seed(0))
    exact = _exact_nelbo(model, windows)
    est = estimate_nelbo(model, windows, repeats=64, seed=0)
    assert est.mc_stderr > 0
    assert abs(est.nelbo - float(exact.mean())) < 4 * est.mc_stderr + 1e-9
    assert float(((est.per_window - exact) / exact).abs().max()) < 0.1  # every window, not just the mean


def test_time_form_loss_has_the_same_expectation():
    """Eq. 8's one-time-per-block estimator (used for training) averages to the same exact NELBO."""
    model = _model(2)
    windows = torch.randint(0, 5, (8, 4), generator=torch.Generator().manual_seed(1))
    exact = float(_exact_nelbo(model, windows).mean())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # 2000 draws per window in one batch (row r * 8 + i is draw r of window i)
        terms = bd3_loss_terms(model, windows.repeat(2000, 1), generator=g)
    draws = terms.sum(-1).view(2000, 8).mean(-1) / 4
    se = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean()) - exact) < 4 * se


def test_block_size_one_is_exact_autoregressive_likelihood():
    model = _model(1, seq_len=8)
    windows = torch.randint(0, 5, (6, 8), generator=torch.Generator().manual_seed(2))
    est = estimate_nelbo(model, windows, repeats=2)
    assert est.mc_stderr == 0.0
    x_t = torch.full_like(windows, model.mask_id)
    lp = subs_log_probs(model(x_t, x0=windows), x_t, model.mask_id)
    ar = -lp.gather(-1, windows[..., None]).squeeze(-1).double().mean(-1)
    torch.testing.assert_close(est.per_window, ar, atol=1e-6, rtol=1e-6)
    assert est.perplexity == pytest.approx(math.exp(est.nelbo))


def test_paired_difference_and_bad_arguments():
    model = _model(2)
    windows = torch.randint(0, 5, (10, 4), generator=torch.Generator().manual_seed(3))
    a = estimate_nelbo(model, windows, repeats=4, seed=0)
    assert paired_difference(a, a) == (0.0, 0.0)
    b = estimate_nelbo(model, windows[:6], repeats=4, seed=0)
    with pytest.raises(ValueError, match="same windows"):
        paired_difference(a, b)
    with pytest.raises(ValueError, match="repeats"):
        estimate_nelbo(model, windows, repeats=3)
    with pytest.raises(ValueError, match="windows"):
        estimate_nelbo(model, windows[:, :2], repeats=4)


def test_validation_nelbo_scores_the_non_overlapping_windows_of_a_stream():
    model = _model(2)
    stream = torch.randint(0, 5, (2, 10), generator=torch.Generator().manual_seed(4))
    windows = torch.stack([stream[0, :4], stream[0, 4:8], stream[1, :4], stream[1, 4:8]])  # rows, in order
    est = validation_nelbo(model, stream, repeats=4, seed=7)
    torch.testing.assert_close(est.per_window, estimate_nelbo(model, windows, repeats=4, seed=7).per_window)
    assert validation_nelbo(model, stream, max_windows=3, repeats=4).per_window.shape == (3,)
    with pytest.raises(ValueError, match="stream: expected at least 2 windows"):
        validation_nelbo(model, stream[:1, :5], repeats=4)
