"""Value checks of the sampler steps (``diffcore.sampling``) that the equation tests left open: each kills
mutants that ``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left)."""

from __future__ import annotations

import itertools
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


# ------------------------------------------------------------------------------------------------
# sde_solvers: the Euler-Maruyama step at alpha = 0, the Langevin corrector, annealed Langevin.
# ------------------------------------------------------------------------------------------------


def _linear_eps_denoiser(sched):
    from diffcore.paths import Denoiser

    return Denoiser(lambda x, t: 0.3 * x + 0.05, sched, "eps")


def test_euler_maruyama_at_zero_alpha_is_the_ddpm_posterior_step():
    """Where alpha_t = 0 (rectified flow at t = 1) the step is DDIM with eta = 1, drawing the same noise."""
    from diffcore.sampling import sde_solvers

    sched = schedules.get("rectified-flow")
    den = _linear_eps_denoiser(sched)
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    cur, nxt = steps.grid_points(sched, [1.0, 0.6])
    assert cur.alpha == 0.0
    got = sde_solvers.euler_maruyama_step(den.estimate(x, cur.t), cur, nxt, torch.Generator().manual_seed(5))
    want = steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 1.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.01, 1.0])
def test_langevin_corrector_step_is_song_et_al_algorithm_4(scale):
    """x + e s + sqrt(2 e) z with e = 2 (r ||z|| / ||s||)^2, norms per sample then averaged over the batch;
    ``scale`` makes ||s|| far below 1 (where a clamp of the denominator at 1 would change e)."""
    from diffcore.sampling import sde_solvers

    sched = schedules.get("vp-cosine")
    from diffcore.paths import Denoiser

    den = Denoiser(lambda x, t: scale * (0.3 * x + 0.05), sched, "eps")
    x = torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    z = torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    (p,) = steps.grid_points(sched, [0.4])
    snr = 0.16
    score = -den.estimate(x, p.t).eps / p.sigma
    e = 2 * (snr * z.norm(dim=1).mean() / score.norm(dim=1).mean()) ** 2
    want = x + e * score + (2 * e).sqrt() * z
    got = sde_solvers.langevin_corrector_step(den, x, p, snr, z, {})
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # the step runs in float32


@pytest.mark.parametrize("epsilon", [None, 1e-3])
@pytest.mark.parametrize("grid", [[0.9, 0.7, 0.5, 0.3, 0.0], [0.9, 0.7, 0.5, 0.3]])
def test_annealed_langevin_default_step_is_a_fifth_of_each_level_squared(grid, epsilon):
    """Annealed Langevin: at every level a = epsilon sigma^2 / sigma_L^2 (sigma_L: the last positive level), which
    the default epsilon = 0.2 sigma_L^2 makes 0.2 sigma^2; one step per level, replayed by hand with the same
    draws; a final step to t = 0 returns x0."""
    from diffcore.sampling import sde_solvers

    sched = schedules.get("vp-cosine")
    den = _linear_eps_denoiser(sched)
    grid = torch.tensor(
        grid, dtype=F64
    )  # ending at the data, or at a positive level (then sigma_L is its own)
    x0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    got = sde_solvers.sample_langevin(
        den, x0, grid, cond={}, generator=torch.Generator().manual_seed(4), steps_each=1, epsilon=epsilon
    )
    g = torch.Generator().manual_seed(4)
    x = x0
    points = steps.grid_points(sched, grid)
    sigma_l = [p.sigma for p in points if not p.is_data][-1]
    for cur, nxt in itertools.pairwise(points):
        if nxt.is_data:
            x = den.estimate(x, cur.t).x0
        else:
            a = 0.2 * nxt.sigma**2 if epsilon is None else epsilon * (nxt.sigma / sigma_l) ** 2
            x = x - 0.5 * a / nxt.sigma * den.estimate(x, nxt.t).eps + math.sqrt(a) * steps.randn(x, g)
    torch.testing.assert_close(got, x, rtol=1e-9, atol=1e-12)


def test_annealed_langevin_refuses_a_zero_step_and_no_steps_but_takes_one():
    from diffcore.sampling import sde_solvers

    sched = schedules.get("vp-cosine")
    den = _linear_eps_denoiser(sched)
    x = torch.zeros(2, 3, dtype=F64)
    grid = torch.tensor([0.9, 0.5, 0.0], dtype=F64)
    with pytest.raises(ValueError, match="epsilon"):
        sde_solvers.sample_langevin(den, x, grid, cond={}, epsilon=0.0)
    with pytest.raises(ValueError, match="steps_each"):
        sde_solvers.sample_langevin(den, x, grid, cond={}, steps_each=0)
    out = sde_solvers.sample_langevin(
        den, x, grid, cond={}, steps_each=1, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == x.shape and torch.isfinite(out).all()
