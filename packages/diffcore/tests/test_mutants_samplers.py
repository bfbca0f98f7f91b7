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


# ----------------------------------------------------------------------------- EDM churn (Karras et al. 2022)


def test_churn_gamma_is_edm_algorithm_2_line_4():
    """gamma_i = min(S_churn / N, sqrt(2) - 1) where S_tmin <= sigma_i <= S_tmax (both bounds included, sigma_i
    in data units sigma / alpha), else 0; no churn for S_churn = 0 or at alpha = 0."""
    from diffcore.sampling.euler import churn_gamma

    p = steps.GridPoint(0.5, 0.5, 1.0)  # sigma / alpha = 2 exactly
    inf = math.inf
    assert churn_gamma(p, 10, 0.5, 0.0, inf) == pytest.approx(0.05, rel=1e-15)
    assert churn_gamma(p, 4, 1.0, 0.0, inf) == pytest.approx(0.25, rel=1e-15)
    assert churn_gamma(p, 2, 40.0, 0.0, inf) == pytest.approx(math.sqrt(2) - 1, rel=1e-15)
    assert churn_gamma(p, 10, 0.5, 2.0, 2.0) == pytest.approx(0.05, rel=1e-15)  # bounds included
    assert churn_gamma(p, 10, 0.5, 2.0 + 1e-12, inf) == 0.0
    assert churn_gamma(p, 10, 0.5, 0.0, 2.0 - 1e-12) == 0.0
    assert churn_gamma(p, 10, 0.0, 0.0, inf) == 0.0
    assert churn_gamma(steps.GridPoint(1.0, 0.0, 1.0), 10, 0.5, 0.0, inf) == 0.0


@pytest.mark.parametrize("name, t", [("edm", 0.3), ("vp-cosine", 0.4), ("rectified-flow", 0.6)])
def test_churn_time_raises_the_data_unit_noise_level_by_one_plus_gamma(name, t):
    """Algorithm 2, line 5: sigma_hat = (1 + gamma) sigma_i, in data units sigma / alpha."""
    from diffcore.sampling.euler import churn_time

    sched = schedules.get(name)
    den = GM.denoiser(sched, "eps")
    p = steps.grid_points(sched, [t])[0]
    hat = churn_time(den, p, 0.25)
    assert hat.t > p.t
    assert steps.scaled_sigma(hat) == pytest.approx(1.25 * steps.scaled_sigma(p), rel=1e-9)


def test_churn_time_stops_at_t_one():
    """A raised noise level beyond the path's end is clamped to t = 1 (vp-linear's inverse goes past it)."""
    from diffcore.sampling.euler import churn_time

    sched = schedules.get("vp-linear")
    p = steps.grid_points(sched, [0.99])[0]
    hat = churn_time(GM.denoiser(sched, "eps"), p, math.sqrt(2) - 1)
    assert hat.t == 1.0 and hat.alpha == pytest.approx(float(sched.alpha(torch.tensor(1.0, dtype=F64))))


def test_heun_takes_zero_churn_and_zero_noise_and_refuses_negatives():
    """S_churn = 0 and S_noise = 0 are allowed (>= 0): churn without fresh noise is deterministic."""
    import diffcore

    den = GM.denoiser("edm", "eps")
    noise = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    a = diffcore.sample(
        den, noise, "heun", 6, s_churn=4.0, s_noise=0.0, generator=torch.Generator().manual_seed(1)
    )
    b = diffcore.sample(
        den, noise, "heun", 6, s_churn=4.0, s_noise=0.0, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert torch.isfinite(diffcore.sample(den, noise, "heun", 6, s_churn=0.0)).all()
    for bad in ({"s_churn": -1.0}, {"s_noise": -0.5}):
        with pytest.raises(ValueError, match="s_churn, s_noise"):
            diffcore.sample(den, noise, "heun", 6, **bad)


def test_heun_with_churn_is_edm_algorithm_2_written_out(run):
    """One step of Algorithm 2 with S_noise = 0 on the grid [0.8, 0.5] (N = 1, so gamma = S_churn / 1): raise
    to t_hat, x_hat = (alpha_hat / alpha) x, then Heun from t_hat to t_next with the exact velocities."""
    from diffcore.sampling.euler import churn_time

    sched = schedules.get("vp-cosine")
    den = GM.denoiser(sched, "eps")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    cur, nxt = steps.grid_points(sched, [0.8, 0.5])
    hat = churn_time(den, cur, 0.2)
    x_hat = hat.alpha / cur.alpha * x
    h = nxt.t - hat.t
    v = den.velocity(x_hat, hat.t)
    x_euler = x_hat + h * v
    expected = x_hat + h / 2 * (v + den.velocity(x_euler, nxt.t))
    got = run("heun", den, x, torch.tensor([0.8, 0.5], dtype=F64), s_churn=0.2, s_noise=0.0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
