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


# ---- sampling.ode_solvers: the one-step rules on tensor and tuple states, and dopri5's tolerance guards ----


def _exp_rhs(t, y):
    """dy/dt = y (a tensor) or, for a tuple state, (dy1/dt, dy2/dt) = (y1, -2 y2 + t)."""
    if isinstance(y, torch.Tensor):
        return y
    return (y[0], -2.0 * y[1] + t)


@pytest.mark.parametrize("h", [0.3, -0.2])
def test_midpoint_and_rk4_steps_are_their_taylor_polynomials_on_dy_dt_equals_y(h):
    """On dy/dt = y one step is exactly a truncated exponential series: midpoint 1 + h + h^2/2, RK4 up to h^4/24
    (both with k1 evaluated inside or passed in)."""
    from diffcore.sampling.ode_solvers import midpoint_step, rk4_step

    y = torch.tensor([1.0, -2.0], dtype=F64)
    mid, rk4 = 1 + h + h**2 / 2, 1 + h + h**2 / 2 + h**3 / 6 + h**4 / 24
    for k1 in (None, y):
        torch.testing.assert_close(midpoint_step(_exp_rhs, 0.0, y, h, k1), mid * y, rtol=1e-15, atol=0)
        torch.testing.assert_close(rk4_step(_exp_rhs, 0.0, y, h, k1), rk4 * y, rtol=1e-15, atol=0)


def test_midpoint_and_rk4_steps_on_a_tuple_state_match_the_hand_computed_stages():
    """A tuple state (the likelihood's (x, delta)) goes through the same stages: written out by hand for
    (y1, y2)' = (y1, -2 y2 + t) from t = 0.5, with k1 evaluated inside or passed in."""
    from diffcore.sampling.ode_solvers import midpoint_step, rk4_step

    t, h = 0.5, 0.25
    y = (torch.tensor([1.5], dtype=F64), torch.tensor([0.7], dtype=F64))

    def f(tt, yy):
        return (yy[0], -2.0 * yy[1] + tt)

    def axpy(a, s, b):
        return (a[0] + s * b[0], a[1] + s * b[1])

    k1 = f(t, y)
    k2 = f(t + h / 2, axpy(y, h / 2, k1))
    k3 = f(t + h / 2, axpy(y, h / 2, k2))
    k4 = f(t + h, axpy(y, h, k3))
    want_rk4 = tuple(y[i] + h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) for i in range(2))
    want_mid = axpy(y, h, k2)
    for given in (None, k1):
        for got, want in zip(rk4_step(_exp_rhs, t, y, h, given), want_rk4):
            torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
        for got, want in zip(midpoint_step(_exp_rhs, t, y, h, given), want_mid):
            torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    # the y1 component is the exponential's series, the y2 one differs from it: the stages are not just copied
    torch.testing.assert_close(
        want_rk4[0], y[0] * (1 + h + h**2 / 2 + h**3 / 6 + h**4 / 24), rtol=1e-15, atol=0
    )


def test_dopri5_refuses_a_zero_tolerance():
    from diffcore import sample

    den = GM.denoiser(schedules.get("rectified-flow"), "velocity")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    for rtol, atol in ((0.0, 1e-5), (1e-5, 0.0)):
        with pytest.raises(ValueError, match="rtol, atol"):
            sample(den, x, "dopri5", steps=2, rtol=rtol, atol=atol)


def test_dopri5_on_a_half_precision_state_raises_its_tolerance_to_the_dtype_resolution():
    """A bfloat16 network cannot meet rtol = atol = 1e-9: the tolerances are raised to bfloat16's resolution,
    so the controller finishes in a few dozen evaluations (with the tolerance left at 1e-9 it chases rounding
    noise until torchdiffeq gives up on an underflowing step)."""
    from diffcore import sample

    den = GM.denoiser(schedules.get("rectified-flow"), "velocity")
    calls = []
    estimate = den.estimate

    def counting(x, t, **cond):
        calls.append(t)
        return estimate(x, t, **cond)

    den.estimate = counting  # type: ignore[method-assign]
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    out = sample(den, x, "dopri5", steps=4, rtol=1e-9, atol=1e-9)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert len(calls) < 200


def test_a_tuple_state_and_a_derivative_of_another_length_are_refused():
    """zip(..., strict=True): a right-hand side that returns fewer components than the state is an error, not a
    silently shortened state."""
    from diffcore.sampling.ode_solvers import midpoint_step, rk4_step

    y = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    for step in (midpoint_step, rk4_step):
        with pytest.raises(ValueError):
            step(lambda t, yy: (yy[0],), 0.0, y, 0.1)
    # RK4's last stage k4 is never passed through y + h k: a right-hand side that shortens only there is caught
    # by the final combination.
    with pytest.raises(ValueError):
        rk4_step(lambda t, yy: (yy[0],) if t == 0.1 else yy, 0.0, y, 0.1)


# ---- sampling.unipc: the weights of order 3 and the order schedule ----


def _phi_closed(k: int, z: float) -> float:
    """phi_k(z) = sum_j z^j / (j + k)! in exact rational arithmetic, 60 terms (|z| <= 2)."""
    x = Fraction(z)
    return float(sum(x**j / math.factorial(j + k) for j in range(60)))


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("predict_x0", [True, False])
def test_unipc_weights_of_order_three_solve_the_order_conditions(variant, predict_x0):
    """UniPC's a solves sum_k a_k r_k^(i-1) = b_i, b_i = i! hh phi_{i+1}(hh) / B(h) for i = 1..n (Zhao et al.
    2023, Eq. 8 / Theorem 3.1), hh = -h for data prediction; B(h) = hh (bh1) or e^hh - 1 (bh2)."""
    from diffcore.sampling.unipc import unipc_weights

    h, rks = 0.37, [-0.8, 1.0]  # order 3 corrector: one earlier output at r = -0.8 and the new point
    hh = -h if predict_x0 else h
    b_h = hh if variant == "bh1" else math.expm1(hh)
    b = [math.factorial(i) * hh * _phi_closed(i + 1, hh) / b_h for i in (1, 2)]
    got_bh, a = unipc_weights(3, h, rks, variant, predict_x0)
    assert got_bh == pytest.approx(b_h, rel=1e-15)
    # [[1, 1], [r1, r2]] a = [b1, b2]
    want_a1 = (b[1] - rks[1] * b[0]) / (rks[0] - rks[1])
    want = [want_a1, b[0] - want_a1]
    assert a == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    ("order", "lower_order_final", "want"),
    [
        (3, True, [1, 2, 3, 3, 2, 1]),  # warm-up, then the taper over the last steps
        (3, False, [1, 2, 3, 3, 3, 3]),
        (2, True, [1, 2, 2, 2, 2, 1]),
        (1, True, [1, 1, 1, 1, 1, 1]),
    ],
)
def test_unipc_step_order_warms_up_and_tapers(order, lower_order_final, want):
    """min(order, i + 1) while the history fills, min(order, steps - i) at the end with lower_order_final."""
    from diffcore.sampling.unipc import _step_order

    pts = steps.grid_points(schedules.get("vp-cosine"), [0.9, 0.75, 0.6, 0.45, 0.3, 0.15, 0.05])
    got = [_step_order(order, i, 6, lower_order_final, pts) for i in range(6)]
    assert got == want


def test_unipc_step_order_is_one_across_and_just_after_an_infinite_interval():
    """Zero terminal SNR puts lambda = -inf at t = 1, so the first interval is infinitely long: that step is
    first order, and the next steps use only outputs after it (order 1, then 2); the last step, onto t = 0
    (lambda = +inf), is first order too."""
    from diffcore.sampling.unipc import _step_order

    sched = schedules.ZeroTerminalSNR(schedules.get("vp-cosine"))
    pts = steps.grid_points(sched, [1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0])
    assert math.isinf(steps.step_length(pts[0], pts[1])) and math.isinf(steps.step_length(pts[5], pts[6]))
    got = [_step_order(3, i, 6, False, pts) for i in range(6)]
    assert got == [1, 1, 2, 3, 3, 1]


# ---- sampling.dpm_solver: single-step DPM-Solver-1/2/3, the multistep order rule, the SDE and ancestral steps ----


def _sampler(name, den, x, grid, generator=None, **kw):
    import diffcore

    return diffcore.sampling.get(name).fn(den, x, grid, cond={}, generator=generator, callback=None, **kw)


def _at_lambda(sched, lam):
    """(t, alpha, sigma) where the half-log-SNR is ``lam``, through the schedule's own inverse."""
    t = float(sched.t_from_log_snr(torch.tensor(2 * lam, dtype=F64)))
    tt = torch.tensor(t, dtype=F64)
    return t, float(sched.alpha(tt)), float(sched.sigma(tt))


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("dpm_solver_1", {}),
        ("dpm_solver_2", {}),
        ("dpm_solver_2", {"r1": 1 / 3}),
        ("dpm_solver_3", {}),
        ("dpm_solver_3", {"r1": 0.25, "r2": 0.6}),
    ],
)
def test_dpm_solver_single_steps_are_lu_et_al_algorithms_1_and_2(name, kw):
    """Noise prediction, written as in the paper (Lu et al. 2022, Eq. 3.7, Algorithms 1 and 2) with
    h = lambda_t - lambda_s and s_k at lambda_s + r_k h:
    u1 = (a_1 / a_s) x - s_1 (e^{r1 h} - 1) eps_s; DPM-Solver-2 adds - s_t / (2 r1) (e^h - 1) (eps(u1) - eps_s)
    to the DDIM step; DPM-Solver-3 builds u2 with - (s_2 r2 / r1) ((e^{r2 h} - 1) / (r2 h) - 1) D1 and adds
    - (s_t / r2) ((e^h - 1) / h - 1) D2. Two steps, neither onto t = 0."""
    sched = schedules.get("vp-cosine")
    den = GM.denoiser(sched, "eps")
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    grid = [0.8, 0.55, 0.3]
    order = int(name[-1])
    r1 = kw.get("r1", 0.5 if order == 2 else 1 / 3)
    r2 = kw.get("r2", 2 / 3)
    want = x
    for ts, tt in itertools.pairwise(grid):
        a_s, s_s = (float(f(torch.tensor(ts, dtype=F64))) for f in (sched.alpha, sched.sigma))
        a_t, s_t = (float(f(torch.tensor(tt, dtype=F64))) for f in (sched.alpha, sched.sigma))
        lam_s, lam_t = math.log(a_s / s_s), math.log(a_t / s_t)
        h = lam_t - lam_s
        e_s = den.estimate(want, ts).eps
        ddim = a_t / a_s * want - s_t * math.expm1(h) * e_s
        if order == 1:
            want = ddim
            continue
        t1, a1, s1 = _at_lambda(sched, lam_s + r1 * h)
        u1 = a1 / a_s * want - s1 * math.expm1(r1 * h) * e_s
        d1 = den.estimate(u1, t1).eps - e_s
        if order == 2:
            want = ddim - s_t / (2 * r1) * math.expm1(h) * d1
            continue
        t2, a2, s2 = _at_lambda(sched, lam_s + r2 * h)
        u2 = (
            a2 / a_s * want
            - s2 * math.expm1(r2 * h) * e_s
            - s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * d1
        )
        d2 = den.estimate(u2, t2).eps - e_s
        want = ddim - s_t / r2 * (math.expm1(h) / h - 1) * d2
    got = _sampler(name, den, x, torch.tensor(grid, dtype=F64), **kw)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_dpm_solver_2_and_3_refuse_r1_r2_at_the_boundaries():
    """0 < r1 < 1 (DPM-Solver-2) and 0 < r1 < r2 < 1 (DPM-Solver-3), all strict: r1 = 0 divides by zero, r1 = 1
    or r2 = 1 evaluates at lambda_t itself, r1 = r2 repeats a point (Lu et al. 2022, Algorithms 1-2)."""
    den = GM.denoiser(schedules.get("vp-cosine"), "eps")
    x = torch.zeros(2, 2, dtype=F64)
    grid = torch.tensor([0.8, 0.5, 0.0], dtype=F64)
    for r1 in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="r1: expected 0 < r1 < 1"):
            _sampler("dpm_solver_2", den, x, grid, r1=r1)
    for r1, r2 in ((0.0, 2 / 3), (0.5, 0.5), (1 / 3, 1.0), (1 / 3, 1.5), (0.7, 0.6)):
        with pytest.raises(ValueError, match="r1, r2: expected 0 < r1 < r2 < 1"):
            _sampler("dpm_solver_3", den, x, grid, r1=r1, r2=r2)
    for name, kw in (("dpm_solver_2", {"r1": 0.999}), ("dpm_solver_3", {"r1": 0.001, "r2": 0.999})):
        assert torch.isfinite(_sampler(name, den, x, grid, **kw)).all()


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_3m"])
def test_dpmpp_lower_order_final_applies_below_15_steps_only(name):
    """diffusers' rule (``lower_order_final and len(timesteps) < 15``): a 15-step run is the same with and without
    it, a 14-step one is not (its last steps drop to lower order). Grids end at t = 0.2, so the last step is a
    solver step, not the data estimate."""
    den = GM.denoiser(schedules.get("vp-cosine"), "eps")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    for steps_, same in ((15, True), (14, False)):
        grid = torch.linspace(0.9, 0.2, steps_ + 1, dtype=F64)
        a = _sampler(name, den, x, grid, lower_order_final=True)
        b = _sampler(name, den, x, grid, lower_order_final=False)
        assert torch.equal(a, b) is same, steps_


def _history(pts, i, order):
    return pts[max(0, i - order + 1) : i + 1]


@pytest.mark.parametrize(
    ("steps_", "lower_order_final", "want"),
    [
        (14, True, [1, 2, *[3] * 10, 2, 1]),
        (15, True, [1, 2, *[3] * 13]),
        (14, False, [1, 2, *[3] * 12]),
    ],
)
def test_dpmpp_step_order_warms_up_and_tapers_below_15_steps(steps_, lower_order_final, want):
    from diffcore.sampling.dpm_solver import _multistep_order

    pts = steps.grid_points(schedules.get("vp-cosine"), torch.linspace(0.9, 0.2, steps_ + 1).tolist())
    got = [_multistep_order(3, i, steps_, lower_order_final, _history(pts, i, 3)) for i in range(steps_)]
    assert got == want


def test_dpmpp_step_order_is_one_across_and_just_after_an_infinite_interval():
    """Zero terminal SNR: lambda = -inf at t = 1. The step from t = 1 is first order, the next one too (its only
    earlier interval is infinite), then 2 (the outputs after t = 1), then 3."""
    from diffcore.sampling.dpm_solver import _multistep_order

    sched = schedules.ZeroTerminalSNR(schedules.get("vp-cosine"))
    pts = steps.grid_points(sched, [1.0, 0.8, 0.6, 0.4, 0.2, 0.1])
    assert math.isinf(steps.step_length(pts[0], pts[1]))
    for order, want in ((3, [1, 1, 2, 3, 3]), (2, [1, 1, 2, 2, 2])):
        got = [_multistep_order(order, i, 5, False, _history(pts, i, order)) for i in range(5)]
        assert got == want, order


_SDE_CASES = [
    ("vp-cosine", "eps", [0.8, 0.6, 0.4, 0.25, 0.0]),
    ("rectified-flow", "velocity", [1.0, 0.7, 0.45, 0.25]),  # the first step from alpha = 0 (h = inf)
]


@pytest.mark.parametrize(
    ("eta", "s_noise", "solver_type"),
    [(0.5, 0.7, "midpoint"), (0.5, 0.7, "heun"), (1.0, 1.0, "heun"), (0.0, 1.0, "midpoint")],
)
@pytest.mark.parametrize(("schedule", "pred", "grid"), _SDE_CASES)
def test_dpmpp_2m_sde_is_k_diffusions_step_replayed_with_the_same_draws(
    schedule, pred, grid, eta, s_noise, solver_type
):
    """k-diffusion's ``sample_dpmpp_2m_sde`` (= diffusers' ``sde-dpmsolver++`` at eta = 1) written in x_t = alpha x0
    + sigma eps units, with eta_h = eta h: x = (s_t / s_s) e^{-eta_h} x + a_t (1 - e^{-h - eta_h}) x0, plus
    a_t c / r (x0 - x0_prev) with r = h_prev / h and c = (1 - e^{-h - eta_h}) / 2 (midpoint) or
    (1 - e^{-h - eta_h}) / (-h - eta_h) + 1 (heun), plus s_t s_noise sqrt(1 - e^{-2 eta_h}) z. From alpha = 0
    (h = inf) the limits: x = a_t x0 + s_t s_noise z for eta > 0, the ODE's (s_t / s_s) x + a_t x0 for eta = 0.
    eta = 0 draws nothing."""
    sched = schedules.get(schedule)
    den = GM.denoiser(sched, pred)
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    got = _sampler(
        "dpmpp_2m_sde",
        den,
        x,
        torch.tensor(grid, dtype=F64),
        g,
        eta=eta,
        s_noise=s_noise,
        solver_type=solver_type,
    )
    if eta == 0:
        assert torch.equal(g.get_state(), before)
    g = torch.Generator().manual_seed(3)
    want, prev = x, None
    for s, t in itertools.pairwise(steps.grid_points(sched, grid)):
        x0 = den.estimate(want, s.t).x0
        if t.t == 0:
            want = x0
        elif s.alpha == 0:
            want = t.alpha * x0 + (
                t.sigma * s_noise * steps.randn(want, g) if eta > 0 else t.sigma / s.sigma * want
            )
        else:
            h = math.log(t.alpha / t.sigma) - math.log(s.alpha / s.sigma)
            eta_h = eta * h
            want = t.sigma / s.sigma * math.exp(-eta_h) * want - t.alpha * math.expm1(-h - eta_h) * x0
            if prev is not None and prev[0].alpha > 0:
                r = (math.log(s.alpha / s.sigma) - math.log(prev[0].alpha / prev[0].sigma)) / h
                if solver_type == "heun":
                    c = -math.expm1(-h - eta_h) / (-h - eta_h) + 1
                else:
                    c = -0.5 * math.expm1(-h - eta_h)
                want = want + t.alpha * c / r * (x0 - prev[1])
            if eta > 0:
                want = want + t.sigma * s_noise * math.sqrt(-math.expm1(-2 * eta_h)) * steps.randn(want, g)
        prev = (s, x0)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("eta", "s_noise"), [(0.6, 0.7), (1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize(("schedule", "pred", "grid"), _SDE_CASES)
def test_dpmpp_2s_ancestral_is_k_diffusions_step_replayed_with_the_same_draws(
    schedule, pred, grid, eta, s_noise
):
    """k-diffusion's ``sample_dpmpp_2s_ancestral`` in x_t = alpha x0 + sigma eps units: sigma_up = min(eta *
    posterior_std, s_t) (k-diffusion's ``get_ancestral_step`` times alpha_t), sigma_down = sqrt(s_t^2 - up^2),
    lambda_d = log(a_t / sigma_down), h = lambda_d - lambda_s; u = (s_m / s_s) x + a_m (1 - e^{-h/2}) x0 at the
    midpoint lambda_s + h / 2, x = (sigma_down / s_s) x + a_t (1 - e^{-h}) x0(u), plus up s_noise z. From alpha = 0:
    the first-order (DDIM) step to t, no noise. eta = 0 draws nothing."""
    sched = schedules.get(schedule)
    den = GM.denoiser(sched, pred)
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    got = _sampler("dpmpp_2s_ancestral", den, x, torch.tensor(grid, dtype=F64), g, eta=eta, s_noise=s_noise)
    if eta == 0:
        assert torch.equal(g.get_state(), before)
    g = torch.Generator().manual_seed(3)
    want = x
    for s, t in itertools.pairwise(steps.grid_points(sched, grid)):
        d = den.estimate(want, s.t)
        if t.t == 0:
            want = d.x0
        elif s.alpha == 0:
            want = t.alpha * d.x0 + t.sigma * d.eps
        else:
            lam_s = math.log(s.alpha / s.sigma)
            ratio = math.exp(lam_s - math.log(t.alpha / t.sigma))  # sigma_t / sigma_s in data units
            up = min(eta * t.sigma * math.sqrt(1 - ratio**2), t.sigma)
            down = math.sqrt(t.sigma**2 - up**2)
            h = math.log(t.alpha / down) - lam_s
            tm, am, sm = _at_lambda(sched, lam_s + h / 2)
            u = sm / s.sigma * want - am * math.expm1(-h / 2) * d.x0
            want = down / s.sigma * want - t.alpha * math.expm1(-h) * den.estimate(u, tm).x0
            if up > 0:
                want = want + up * s_noise * steps.randn(want, g)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_dpmpp_2s_ancestral_takes_eta_zero_and_above_one_and_refuses_negatives():
    den = GM.denoiser(schedules.get("vp-cosine"), "eps")
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    grid = torch.tensor([0.8, 0.5, 0.0], dtype=F64)
    for eta in (0.0, 0.5, 1.5):
        assert torch.isfinite(
            _sampler("dpmpp_2s_ancestral", den, x, grid, torch.Generator().manual_seed(1), eta=eta)
        ).all()
    for name in ("dpmpp_2s_ancestral", "dpmpp_2m_sde"):
        with pytest.raises(ValueError, match="eta: expected >= 0"):
            _sampler(name, den, x, grid, eta=-1e-9)


def test_multistep_weights_refuse_orders_other_than_one_to_three():
    """There are weights for orders 1-3 only: order 4 is refused, not answered with the order-3 weights."""
    from diffcore.sampling.dpm_solver import multistep_weights

    for order in (0, 4):
        with pytest.raises(ValueError, match="order: expected 1, 2 or 3"):
            multistep_weights(order, 0.3, [0.2, 0.25, 0.3])
    for order in (1, 2, 3):
        assert len(multistep_weights(order, 0.3, [0.2, 0.25][: order - 1])) == order
