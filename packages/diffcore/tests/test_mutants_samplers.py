"""Value checks of the sampler steps (``diffcore.sampling``) that the equation tests left open: each kills
mutants that ``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.sampling import steps

F64 = torch.float64
GM = GaussianMixture(
    torch.tensor([0.4, 0.6]), torch.tensor([[-1.5, 0.5], [1.0, -1.0]]), torch.full((2, 2), 0.3)
)


def test_deterministic_ddim_draws_no_noise():
    """eta = 0 (and a step whose spread c is 0) leaves the generator untouched: deterministic DDIM draws
    nothing (a draw multiplied by 0 would give the same x but move the caller's random stream)."""
    sched = schedules.get("vp-cosine")
    den = GM.denoiser(sched, "eps")
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    cur, nxt = steps.grid_points(sched, [0.7, 0.4])
    g = torch.Generator().manual_seed(1)
    before = g.get_state()
    out = steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.0, g)
    assert torch.equal(g.get_state(), before)
    assert torch.equal(out, steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.0, None))
    steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.5, g)
    assert not torch.equal(g.get_state(), before)  # eta > 0 draws


def _phi_exact(k: int, h: float) -> float:
    """I_k(h) = sum_j (-1)^j h^(k+1+j) / (k+1+j)! in exact rational arithmetic (40 terms, |h| <= 4)."""
    x = Fraction(h)
    return float(sum((-1) ** j * x ** (k + 1 + j) / math.factorial(k + 1 + j) for j in range(40)))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_phi_is_accurate_to_rounding_for_small_and_large_steps(k):
    """The series below |h| = 0.1 (k + 1) and the recurrence above are both good to ~4e-16 there; the
    recurrence at smaller h cancels (1e-11 lost at h = 1e-4) and 20 series terms at h = 4 are short (7e-11)."""
    for h in (1e-6, 1e-4, 0.01, 0.05, 0.15, 0.3, 1.0, 2.5, 4.0):
        assert steps.phi(k, h) == pytest.approx(_phi_exact(k, h), rel=1e-14, abs=0)
