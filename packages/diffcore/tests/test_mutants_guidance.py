"""Value checks of ``diffcore.guidance`` that the equation tests left open: each kills mutants that
``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left and why)."""

from __future__ import annotations

import pytest
import torch
from diffcore.guidance.discrete import guided_log_probs

F64 = torch.float64
INF = float("inf")


def _logits(seed: int, shape=(2, 3, 5)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("w", [0.0, 1.0, 0.3, 2.5, -0.5])
def test_guided_log_probs_is_the_normalised_geometric_mixture(w):
    """p_w ∝ p_u^(1 - w) p_c^w per position (Nisonoff et al. 2024, Eq. 9), over the last axis of a 3-D input
    (a mixture over another axis, or the unnormalised sum, fails)."""
    lc, lu = _logits(0), _logits(1)
    pc, pu = torch.softmax(lc.double(), -1), torch.softmax(lu.double(), -1)
    p = pu ** (1 - w) * pc**w
    expected = torch.log(p / p.sum(-1, keepdim=True))
    got = guided_log_probs(lc, lu, w)
    assert got.dtype == torch.float32 and got.shape == lc.shape
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-6)


def test_w_zero_and_one_are_the_unconditional_and_conditional_models():
    lc, lu = _logits(2), _logits(3)
    torch.testing.assert_close(guided_log_probs(lc, lu, 0.0), torch.log_softmax(lu, -1))
    torch.testing.assert_close(guided_log_probs(lc, lu, 1.0), torch.log_softmax(lc, -1))


def test_minus_inf_entries_stay_impossible_and_the_rest_normalises():
    """An entry impossible in both models stays -inf; one impossible in one model only is -inf under the
    guided mixture too (0^w for w > 0, and the NaN of -inf + w * inf is read as -inf); the others carry the
    geometric mixture, renormalised."""
    lc = torch.tensor([[0.0, 1.0, -INF, -INF, 0.5]])
    lu = torch.tensor([[0.5, 0.0, -INF, 0.2, -INF]])
    for w in (0.5, 2.0):
        got = guided_log_probs(lc, lu, w)
        assert torch.isneginf(got[0, 2:]).all()
        a = torch.log_softmax(lc[0, :2].double() * w + lu[0, :2].double() * (1 - w), -1)
        # the finite entries' log-probabilities, renormalised over the two that remain possible
        torch.testing.assert_close(got[0, :2].double(), a, rtol=0, atol=2e-6)
        assert torch.exp(got).sum().item() == pytest.approx(1.0, abs=1e-6)


def test_unequal_shapes_are_refused():
    with pytest.raises(ValueError, match="expected equal shapes"):
        guided_log_probs(torch.zeros(2, 5), torch.zeros(2, 4), 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True])
def test_classifier_sees_the_times_in_the_float_dtype_of_x(dtype, per_sample):
    """The classifier gets t as a (B,) tensor, float64 for float64 inputs and float32 otherwise (never the
    other way round), with the values asked for."""
    from diffcore.guidance.wrappers import ClassifierGuidance
    from diffcore.paths.analytic import GaussianMixture

    gm = GaussianMixture(
        torch.tensor([0.4, 0.6]), torch.tensor([[-1.5, 0.5], [1.0, -1.0]]), torch.full((2, 2), 0.3)
    )
    den = gm.denoiser("vp-linear", "eps")
    seen = []

    def log_prob(x, t):
        seen.append(t)
        return -(x.float() ** 2).sum(1)

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    times = torch.tensor([0.2, 0.5, 0.7], dtype=F64) if per_sample else 0.5
    ClassifierGuidance(den, log_prob, 1.0).x0_eps(x, times)
    expected = torch.float64 if dtype == F64 else torch.float32
    assert seen[0].dtype == expected and seen[0].shape == (3,)
    torch.testing.assert_close(seen[0].double(), torch.as_tensor(times, dtype=F64).expand(3))
