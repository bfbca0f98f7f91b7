"""The equations of a Gaussian path, each against an answer computed independently in the test (a closed form
written here, or diffusers): the forward step, the closed-form marginal and its reparameterisation, the
posterior (reverse-step) mean and variance, SNR = alpha^2 / sigma^2 on every registered schedule, the time
derivatives, and the zero-terminal-SNR rescale.

Tolerances are chosen so that a plausible wrong formula fails; the comments say by how much it would miss.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.paths import schedules, transitions
from diffcore.paths.schedules import DiscreteVP
from diffcore.sampling import steps

F64 = torch.float64
T = 1000


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def ho_tables(num_steps: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    """DDPM's linear betas (Ho et al. 2020, Sec. 4: 1e-4 .. 0.02) and abar_i = prod_{j <= i} (1 - beta_j), i = 1..T."""
    betas = torch.linspace(1e-4, 0.02, num_steps, dtype=F64)
    return betas, torch.cumprod(1 - betas, 0)


ALL_SCHEDULES = [
    *[(name, lambda name=name: schedules.get(name)) for name in schedules.available()],
    ("ztsnr(ddpm-scaled-linear)", lambda: schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))),
    ("ztsnr(vp-linear)", lambda: schedules.ZeroTerminalSNR(schedules.get("vp-linear"))),
    ("shifted(rectified-flow, 3)", lambda: schedules.Shifted(schedules.get("rectified-flow"), 3.0)),
    ("shifted(vp-cosine, 2)", lambda: schedules.Shifted(schedules.get("vp-cosine"), 2.0)),
    ("shifted(ddpm-linear, 0.5)", lambda: schedules.Shifted(schedules.get("ddpm-linear"), 0.5)),
]
# Interior times away from the knots of the 1000-step tables (finite differences stay inside one cell).
INTERIOR = _t(0.0123, 0.1004, 0.2506, 0.3337, 0.5002, 0.6668, 0.8005, 0.9004, 0.9705)


# ----------------------------------------------------------------------------- forward step and marginal


def test_forward_step_is_ho_et_al_eq_2_on_the_ddpm_table():
    """q(x_i | x_{i-1}) = N(sqrt(1 - beta_i) x_{i-1}, beta_i I). (A step with the marginal's coefficients
    instead, mean sqrt(abar_i) x, misses the mean by 0.02 already at i = 2.)"""
    betas, _ = ho_tables()
    sched = schedules.get("ddpm-linear")
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    for i in (1, 2, 10, 500, 999, 1000):
        mean, std = transitions.forward_step(sched, x, (i - 1) / T, i / T)
        torch.testing.assert_close(mean, math.sqrt(1 - betas[i - 1]) * x, rtol=1e-12, atol=0)
        torch.testing.assert_close(std, torch.sqrt(betas[i - 1]), rtol=1e-9, atol=1e-14)


def test_forward_step_takes_one_time_per_sample():
    betas, _ = ho_tables()
    sched = schedules.get("ddpm-linear")
    i = torch.tensor([1, 7, 300, 1000])
    x = torch.ones(4, 2, 2, dtype=F64)
    mean, std = transitions.forward_step(sched, x, (i - 1).double() / T, i.double() / T)
    expected = torch.sqrt(1 - betas[i - 1])[:, None, None]
    torch.testing.assert_close(mean, expected.expand(4, 2, 2), rtol=1e-12, atol=0)
    torch.testing.assert_close(std, torch.sqrt(betas[i - 1])[:, None, None], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "rectified-flow", "edm", "ve", "sub-vp"])
def test_forward_steps_compose_to_the_closed_form_marginal(name):
    """Two steps s -> u -> t equal one step s -> t (Chapman-Kolmogorov): means multiply and variances add as
    a^2 b_su^2 + b_ut^2; from t = 0 of a path that starts at data the step is the marginal N(alpha_t x0, sigma_t^2)."""
    sched = schedules.get(name)
    x = torch.ones(1, dtype=F64)
    s, u, t = 0.15, 0.4, 0.85
    m_su, b_su = transitions.forward_step(sched, x, s, u)
    m_ut, b_ut = transitions.forward_step(sched, m_su, u, t)
    m_st, b_st = transitions.forward_step(sched, x, s, t)
    torch.testing.assert_close(m_ut, m_st, rtol=1e-12, atol=0)
    a_ut = m_ut / m_su
    torch.testing.assert_close(
        ((a_ut * b_su) ** 2 + b_ut**2).reshape(1), (b_st**2).reshape(1), rtol=1e-10, atol=0
    )
    if float(sched.sigma(_t(0.0))) == 0.0:
        mean, std = transitions.forward_step(sched, x, 0.0, t)
        torch.testing.assert_close(mean, sched.alpha(_t(t)), rtol=1e-12, atol=0)
        torch.testing.assert_close(std.reshape(1), sched.sigma(_t(t)), rtol=1e-10, atol=0)


def test_closed_form_marginal_is_ho_et_al_eq_4_and_matches_diffusers_add_noise():
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), drawn as x_t = sqrt(abar) x0 + sqrt(1 - abar) eps.
    (The classic slip, (1 - abar) instead of sqrt(1 - abar) on eps, misses by up to 0.25 in sigma.)"""
    diffusers = pytest.importorskip("diffusers")
    _, abar = ho_tables()
    sched = schedules.get("ddpm-linear")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 4, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64)
    i = torch.tensor([1, 10, 250, 640, 1000])
    x_t = transitions.marginal_sample(sched, x0, i.double() / T, eps)
    expected = abar[i - 1].sqrt()[:, None] * x0 + (1 - abar[i - 1]).sqrt()[:, None] * eps
    torch.testing.assert_close(x_t, expected, rtol=1e-10, atol=1e-12)
    # diffusers indexes its table by k = i - 1 and keeps it in float32.
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear").add_noise(
        x0.float(), eps.float(), i - 1
    )
    torch.testing.assert_close(x_t.float(), ref, rtol=1e-5, atol=1e-5)


def test_reparameterised_draws_have_the_marginal_moments():
    """E[x_t] = alpha_t x0 and Var[x_t] = sigma_t^2, here on the cosine path at t = 0.6 (Monte Carlo, 4 standard errors)."""
    sched = schedules.get("vp-cosine")
    n = 200_000
    noise = torch.randn(n, 1, dtype=F64, generator=torch.Generator().manual_seed(2))
    x_t = transitions.marginal_sample(sched, torch.full((n, 1), 1.5, dtype=F64), 0.6, noise)
    a, s = float(sched.alpha(_t(0.6))), float(sched.sigma(_t(0.6)))
    assert abs(float(x_t.mean()) - 1.5 * a) < 4 * s / math.sqrt(n)
    assert abs(float(x_t.var()) - s * s) < 4 * s * s * math.sqrt(2 / n)


# ----------------------------------------------------------------------------- the posterior (reverse step)


def test_posterior_is_ho_et_al_eq_7_on_the_ddpm_table():
    """mu-tilde = sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0 + sqrt(1 - beta_i) (1 - abar_{i-1}) / (1 - abar_i) x_i,
    beta-tilde = (1 - abar_{i-1}) / (1 - abar_i) beta_i. (Swapping the two mean coefficients, or using beta_i
    for the variance, misses by 20% to 100% at small i.)"""
    betas, abar = ho_tables()
    sched = schedules.get("ddpm-linear")
    g = torch.Generator().manual_seed(3)
    x0, x_t = torch.randn(3, 2, generator=g, dtype=F64), torch.randn(3, 2, generator=g, dtype=F64)
    for i in (2, 3, 50, 999, 1000):
        mean, var = transitions.posterior(sched, x0, x_t, (i - 1) / T, i / T)
        b, ab, ab_prev = betas[i - 1], abar[i - 1], abar[i - 2]
        mu = ab_prev.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
        torch.testing.assert_close(mean, mu, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(var, (1 - ab_prev) / (1 - ab) * b, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", ["vp-cosine", "rectified-flow", "edm", "ve", "vp-scaled-linear"])
def test_posterior_is_bayes_rule_on_any_path(name):
    """q(x_s | x_t, x0) is proportional to q(x_t | x_s) q(x_s | x0): a product of Gaussians, whose precision is
    1 / var_s + a^2 / b^2 and whose mean is var (alpha_s x0 / sigma_s^2 + a x_t / b^2)."""
    sched = schedules.get(name)
    x0, x_t = torch.tensor([0.7, -1.2], dtype=F64), torch.tensor([0.3, 2.0], dtype=F64)
    s, t = 0.3, 0.55
    a_s, s_s, a_t, s_t = (float(v) for v in (*sched.coefficients(_t(s))[:2], *sched.coefficients(_t(t))[:2]))
    a = a_t / a_s
    b2 = s_t**2 - a**2 * s_s**2
    var = 1 / (1 / s_s**2 + a**2 / b2)
    mean = var * (a_s * x0 / s_s**2 + a * x_t / b2)
    got_mean, got_var = transitions.posterior(sched, x0, x_t, s, t)
    torch.testing.assert_close(got_mean, mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_var, torch.tensor(var, dtype=F64), rtol=1e-10, atol=0)


def test_samplers_posterior_std_and_snr_ratio_are_the_posterior_of_ho_et_al():
    """The float versions on a grid (``steps.posterior_std``, ``steps.snr_ratio``) give the same mean and
    variance: mean = alpha_s x0 + r sigma_s eps with eps = (x_t - alpha_t x0) / sigma_t."""
    betas, abar = ho_tables()
    sched = schedules.get("ddpm-linear")
    x0, x_t = torch.tensor([0.4]), torch.tensor([-0.9])
    for i in (2, 40, 700, 1000):
        nxt, cur = steps.grid_points(sched, [(i - 1) / T, i / T])
        b, ab, ab_prev = betas[i - 1], abar[i - 1], abar[i - 2]
        assert steps.posterior_std(cur, nxt) ** 2 == pytest.approx(
            float((1 - ab_prev) / (1 - ab) * b), rel=1e-9
        )
        eps = (x_t - cur.alpha * x0) / cur.sigma
        mean = nxt.alpha * x0 + steps.snr_ratio(cur, nxt) * nxt.sigma * eps
        mu = ab_prev.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
        torch.testing.assert_close(mean.double(), mu.double(), rtol=1e-6, atol=1e-7)
        assert steps.transition_std(nxt, cur) ** 2 == pytest.approx(float(b), rel=1e-9)


def test_posterior_matches_a_diffusers_ddpm_step():
    """diffusers' DDPMScheduler.step with an x0 prediction and the "fixed_small" variance draws
    mean + sqrt(beta-tilde) z; with the same z it must land where our posterior says."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule="linear", clip_sample=False, prediction_type="sample"
    )
    abar32 = ref.alphas_cumprod.to(F64)
    sched = DiscreteVP(1 - abar32 / torch.cat([torch.ones(1, dtype=F64), abar32[:-1]]))
    g = torch.Generator().manual_seed(4)
    x0, x_t = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    # diffusers' timestep k is our t = (k + 1) / T. Its float32 beta_k = 1 - abar_k / abar_{k-1} carries a relative
    # error of ~6e-8 / beta_k, 6e-4 at k = 1: the comparison starts at k = 20.
    for k in (20, 500, 999):
        out = ref.step(x0, k, x_t, generator=torch.Generator().manual_seed(k)).prev_sample
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(k))
        mean, var = transitions.posterior(sched, x0.double(), x_t.double(), k / T, (k + 1) / T)
        torch.testing.assert_close(out.double(), mean + var.sqrt() * z.double(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- SNR and derivatives


@pytest.mark.parametrize("name, make", ALL_SCHEDULES, ids=[n for n, _ in ALL_SCHEDULES])
def test_log_snr_is_log_alpha_squared_over_sigma_squared(name, make):
    """log_snr = log(alpha^2 / sigma^2) on every registered schedule and wrapper, with the edges +inf where
    sigma = 0 and -inf where alpha = 0. (log(alpha / sigma), half of it, misses by |log_snr| / 2, up to 7.)"""
    sched = make()
    a, s = sched.alpha(INTERIOR), sched.sigma(INTERIOR)
    torch.testing.assert_close(sched.log_snr(INTERIOR), torch.log(a**2 / s**2), rtol=1e-9, atol=1e-9)
    edges = _t(0.0, 1.0)
    a, s = sched.alpha(edges), sched.sigma(edges)
    expected = torch.log(a**2) - torch.log(s**2)  # +inf - finite, finite - (-inf), as IEEE says
    torch.testing.assert_close(sched.log_snr(edges), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name, make", ALL_SCHEDULES, ids=[n for n, _ in ALL_SCHEDULES])
def test_t_from_log_snr_inverts_log_snr(name, make):
    sched = make()
    lam = sched.log_snr(INTERIOR)
    torch.testing.assert_close(sched.t_from_log_snr(lam).to(F64), INTERIOR, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name, make", ALL_SCHEDULES, ids=[n for n, _ in ALL_SCHEDULES])
def test_derivatives_are_the_time_derivatives_of_alpha_and_sigma(name, make):
    """d_alpha, d_sigma against central differences (h = 1e-7, inside one cell of the discrete tables)."""
    sched = make()
    h = 1e-7
    for fn, d_fn in ((sched.alpha, sched.d_alpha), (sched.sigma, sched.d_sigma)):
        numeric = (fn(INTERIOR + h) - fn(INTERIOR - h)) / (2 * h)
        torch.testing.assert_close(d_fn(INTERIOR).to(F64), numeric, rtol=2e-5, atol=1e-6)


def test_snr_of_the_ddpm_table_matches_diffusers_compute_snr():
    """diffusers' Min-SNR helper computes SNR = abar / (1 - abar) from its own table (float32)."""
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    ref = DDPMScheduler(
        num_train_timesteps=T, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    k = torch.tensor([0, 5, 99, 400, 998, 999])
    ours = schedules.get("ddpm-scaled-linear").log_snr((k + 1).double() / T).exp()
    # float32 1 - abar carries a relative error of ~6e-8 / (1 - abar), 7e-5 at k = 0
    torch.testing.assert_close(ours.float(), compute_snr(ref, k), rtol=1e-4, atol=0)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "vp-scaled-linear", "ddpm-linear", "ddpm-cosine"])
def test_vp_schedules_preserve_variance(name):
    sched = schedules.get(name)
    assert sched.variance_preserving
    a, s = sched.alpha(INTERIOR), sched.sigma(INTERIOR)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a), rtol=0, atol=1e-12)


def test_continuous_vp_schedules_are_their_closed_forms():
    """VP-linear: log abar = -(b0 t + (b1 - b0) t^2 / 2) (Song et al. 2021, Eq. 33); cosine:
    abar = cos^2(((t + s) / (1 + s)) pi / 2) / cos^2((s / (1 + s)) pi / 2) (Nichol & Dhariwal 2021, Eq. 17);
    scaled linear: beta(t) = T (sqrt(b0) + t (sqrt(b1) - sqrt(b0)))^2 integrated; VE: sigma_min (sigma_max /
    sigma_min)^t; EDM: t sigma_max; rectified flow: (1 - t, t)."""
    t = INTERIOR
    lab = -(0.1 * t + 0.5 * 19.9 * t**2)
    torch.testing.assert_close(schedules.get("vp-linear").alpha(t), torch.exp(lab / 2), rtol=1e-12, atol=0)
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(schedules.get("vp-cosine").alpha(t), f.sqrt(), rtol=1e-12, atol=1e-15)
    a0, a1 = math.sqrt(0.00085), math.sqrt(0.012)
    lab = -1000 * ((a0 + (a1 - a0) * t) ** 3 - a0**3) / (3 * (a1 - a0))
    torch.testing.assert_close(
        schedules.get("vp-scaled-linear").alpha(t), torch.exp(lab / 2), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(schedules.get("ve").sigma(t), 0.01 * 5000.0**t, rtol=1e-12, atol=0)
    torch.testing.assert_close(schedules.get("edm").sigma(t), 80 * t, rtol=1e-12, atol=0)
    rf = schedules.get("rectified-flow")
    torch.testing.assert_close(torch.stack([rf.alpha(t), rf.sigma(t)]), torch.stack([1 - t, t]))
    sub = schedules.get("sub-vp")
    lab = -(0.1 * t + 0.5 * 19.9 * t**2)
    torch.testing.assert_close(sub.sigma(t), 1 - torch.exp(lab), rtol=1e-12, atol=0)


def test_discrete_tables_are_their_beta_formulas():
    """linear: 1e-4 .. 0.02 (Ho et al.); scaled linear: (linspace(sqrt(0.00085), sqrt(0.012)))^2 (Stable
    Diffusion); cosine: 1 - f(i/T) / f((i-1)/T), clipped at 0.999 (Nichol & Dhariwal 2021, Eq. 17)."""
    i = torch.arange(T + 1, dtype=F64)
    f = torch.cos((i / T + 0.008) / 1.008 * math.pi / 2) ** 2
    expected = {
        "ddpm-linear": torch.linspace(1e-4, 0.02, T, dtype=F64),
        "ddpm-scaled-linear": torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=F64) ** 2,
        "ddpm-cosine": (1 - f[1:] / f[:-1]).clamp(max=0.999),
    }
    for name, betas in expected.items():
        sched = schedules.get(name)
        torch.testing.assert_close(sched.betas, betas, rtol=1e-12, atol=0)
        abar = torch.cumprod(1 - betas, 0)
        torch.testing.assert_close(sched.alphas_cumprod, abar, rtol=1e-10, atol=0)
        torch.testing.assert_close(sched.alpha(i[1:] / T) ** 2, abar, rtol=1e-10, atol=1e-300)
    # 500 steps: the linear table keeps its end points in units of a 1000-step table
    torch.testing.assert_close(
        schedules.get("ddpm-linear", num_steps=500).betas, torch.linspace(2e-4, 0.04, 500, dtype=F64)
    )


def test_discrete_table_interpolates_log_abar_linearly_between_steps():
    sched = schedules.get("ddpm-linear")
    _, abar = ho_tables()
    t = _t(0.1234)  # between i = 123 and 124
    w = 0.4
    expected = (1 - w) * torch.log(abar[122]) + w * torch.log(abar[123])
    torch.testing.assert_close(sched.log_alpha_bar(t), expected.reshape(1), rtol=1e-9, atol=0)
    torch.testing.assert_close(sched.alpha(_t(0.0)), _t(1.0))


# ----------------------------------------------------------------------------- zero terminal SNR


def lin_et_al_algorithm_1(alphas_bar_sqrt: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1, on sqrt(abar): shift so the last value is 0, scale so the first is kept."""
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    return (alphas_bar_sqrt - last) * first / (first - last)


@pytest.mark.parametrize("base", ["ddpm-scaled-linear", "ddpm-linear", "vp-linear"])
def test_zero_terminal_snr_is_lin_et_al_algorithm_1(base):
    """On the table t = 0, 1/T, ..., 1 (whose first point is t = 0, abar = 1) the wrapper is Algorithm 1 to
    rounding. (Rescaling abar instead of sqrt(abar), alpha'^2 = (a^2 - a1^2) / (1 - a1^2), misses alpha by up
    to 0.047 on ddpm-scaled-linear; alpha' = (a^2 - a1^2) / (1 - a1^2) by up to 0.22.)"""
    sched = schedules.get(base)
    z = schedules.ZeroTerminalSNR(sched)
    t = torch.arange(T + 1, dtype=F64) / T
    expected = lin_et_al_algorithm_1(sched.alpha(t))
    torch.testing.assert_close(z.alpha(t), expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(z.sigma(t), (1 - expected**2).sqrt(), rtol=0, atol=1e-12)
    assert float(z.alpha(_t(1.0))) == 0.0 and float(z.sigma(_t(1.0))) == 1.0
    assert float(z.log_snr(_t(1.0))) == -math.inf


def test_zero_terminal_snr_matches_diffusers_rescale_zero_terminal_snr():
    """diffusers' rescale_zero_terminal_snr runs Algorithm 1 on its table i = 1..T, keeping sqrt(abar_1) rather
    than alpha(0) = 1; the two differ by (1 - sqrt(abar_1)) a1 / (1 - a1) = 3.1e-5 at most on Stable
    Diffusion's table, well below the 0.047 of a wrong rescale."""
    pytest.importorskip("diffusers")
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = schedules.betas_for("scaled_linear")
    ref = torch.cumprod(1 - rescale_zero_terminal_snr(betas), 0).sqrt()
    z = schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))
    i = torch.arange(1, T + 1, dtype=F64)
    assert float((z.alpha(i / T) - ref).abs().max()) < 4e-5
    assert float(ref[-1]) == 0.0


def test_zero_terminal_snr_derivatives_and_refusal_of_non_vp_paths():
    z = schedules.ZeroTerminalSNR(schedules.get("vp-cosine"))
    assert z.variance_preserving
    with pytest.raises(ValueError, match="VP"):
        schedules.ZeroTerminalSNR(schedules.get("ve"))


# ----------------------------------------------------------------------------- the rest of the schedule surface


@pytest.mark.parametrize("name", ["vp-linear", "vp-scaled-linear", "vp-cosine", "ddpm-linear", "ddpm-cosine"])
def test_vp_log_alpha_bar_and_beta_are_the_log_of_alpha_squared_and_its_rate(name):
    """log abar = log(alpha^2), d log abar / dt = 2 d_alpha / alpha, beta(t) = -d log abar / dt (for VP-linear
    0.1 + 19.9 t, Song et al. 2021, Eq. 33)."""
    sched = schedules.get(name)
    t = INTERIOR[:-1]  # the cosine's rate is infinite at t = 1
    a, da = sched.alpha(t), sched.d_alpha(t)
    torch.testing.assert_close(sched.log_alpha_bar(t), torch.log(a**2), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sched.d_log_alpha_bar(t), 2 * da / a, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(sched.beta(t), -2 * da / a, rtol=1e-5, atol=1e-8)
    if name == "vp-linear":
        torch.testing.assert_close(sched.beta(t), 0.1 + 19.9 * t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("s", [0.0, 0.008, 0.3])
def test_cosine_schedule_with_any_offset_is_nichol_and_dhariwal_eq_17(s):
    """abar(t) = f(t) / f(0), f(t) = cos(((t + s) / (1 + s)) pi / 2)^2, with its derivative and inverse; exactly
    alpha = 1 at t = 0 and alpha = 0 at t = 1."""
    sched = schedules.VPCosine(s)
    t = INTERIOR

    def alpha(t):
        return torch.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)

    torch.testing.assert_close(sched.alpha(t), alpha(t), rtol=1e-12, atol=1e-15)
    h = 1e-7
    torch.testing.assert_close(
        sched.d_alpha(t), (alpha(t + h) - alpha(t - h)) / (2 * h), rtol=1e-6, atol=1e-7
    )
    torch.testing.assert_close(sched.t_from_log_snr(sched.log_snr(t)), t, rtol=0, atol=1e-9)
    edges = _t(0.0, 1.0)
    # alpha(0) = cos(pi / (2 (1 + s))) / cos(s pi / (2 (1 + s))) is 1 up to rounding (1 - 1.1e-16 at s = 0.3)
    torch.testing.assert_close(sched.alpha(edges), _t(1.0, 0.0), rtol=0, atol=2e-16)
    torch.testing.assert_close(sched.sigma(edges), _t(0.0, 1.0), rtol=0, atol=2e-8)
    assert float(sched.alpha(_t(1.0))) == 0.0 and float(sched.sigma(_t(1.0))) == 1.0
    assert sched.t_from_log_snr(_t(math.inf, -math.inf)).tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    "name", ["vp-linear", "vp-scaled-linear", "ddpm-linear", "rectified-flow", "edm", "ve"]
)
def test_t_from_log_snr_decreases_in_log_snr(name):
    """(VP-linear's closed form extrapolates past t = 1 for log-SNRs below log_snr(1), as ``Shifted`` needs.)"""
    sched = schedules.get(name)
    lam = torch.linspace(-20, 20, 41, dtype=F64)
    t = sched.t_from_log_snr(lam).to(F64)
    assert bool((t[1:] <= t[:-1]).all()) and bool((t >= 0).all())
    if name in ("edm", "ve"):  # these clamp to [0, 1] beyond the path's ends
        assert float(sched.t_from_log_snr(_t(-60.0))) == 1.0
    if name == "ve":
        assert float(sched.t_from_log_snr(_t(60.0))) == 0.0


BAD_ARGUMENTS = [
    (lambda: schedules.VPLinear(0.0, 20.0), True),
    (lambda: schedules.VPLinear(5.0, 5.0), True),
    (lambda: schedules.VPLinear(1e-9, 1e-8), False),
    (lambda: schedules.VPScaledLinear(0.0, 0.012), True),
    (lambda: schedules.VPScaledLinear(0.01, 0.01), True),
    (lambda: schedules.VPScaledLinear(0.5, 1.0), True),
    (lambda: schedules.VPScaledLinear(0.5, 0.99), False),
    (lambda: schedules.VPCosine(-1e-9), True),
    (lambda: schedules.VPCosine(0.0), False),
    (lambda: schedules.betas_for("linear", 0), True),
    (lambda: schedules.betas_for("linear", 1), False),
    (lambda: schedules.betas_for("quadratic"), True),
    (lambda: DiscreteVP(torch.zeros(0)), True),
    (lambda: DiscreteVP(torch.full((2, 2), 0.1)), True),
    (lambda: DiscreteVP(torch.tensor([0.1, 0.0])), True),
    (lambda: DiscreteVP(torch.tensor([0.1, 1.0 + 1e-9], dtype=F64)), True),
    (lambda: DiscreteVP(torch.tensor([0.1, 1.0])), False),
    (lambda: schedules.VE(0.0, 1.0), True),
    (lambda: schedules.VE(1.0, 1.0), True),
    (lambda: schedules.EDM(0.0), True),
    (lambda: schedules.EDM(1e-9), False),
    (lambda: schedules.Shifted(schedules.RectifiedFlow(), 0.0), True),
    (lambda: schedules.Shifted(schedules.RectifiedFlow(), 1e-9), False),
    (lambda: schedules.resolution_shift(0), True),
    (lambda: schedules.resolution_shift(4, 0), True),
    (lambda: schedules.resolution_shift(1, 1), False),
]


@pytest.mark.parametrize("make, bad", BAD_ARGUMENTS)
def test_schedules_refuse_parameters_outside_their_domain_exactly_at_the_boundary(make, bad):
    if bad:
        with pytest.raises(ValueError):
            make()
    else:
        make()


def test_resolution_shift_is_the_square_root_of_the_token_ratio():
    """Esser et al. 2024, Sec. 5.3.2: sqrt(m / n); 1024^2 against 256^2 (16x the tokens) is 4."""
    assert schedules.resolution_shift(4096) == pytest.approx(4.0, rel=1e-15)
    assert schedules.resolution_shift(4096, 1024) == pytest.approx(2.0, rel=1e-15)


def test_shifted_rectified_flow_is_sd3_eq_23():
    """t' = s t / (1 + (s - 1) t) (Esser et al. 2024, Eq. 23), alpha = 1 - t', with dt'/dt = s / (1 + (s - 1) t)^2."""
    sched = schedules.Shifted(schedules.RectifiedFlow(), 3.0)
    t = INTERIOR
    tw = 3 * t / (1 + 2 * t)
    torch.testing.assert_close(sched.alpha(t), 1 - tw, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sched.d_sigma(t), 3 / (1 + 2 * t) ** 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(sched.log_snr(t), schedules.RectifiedFlow().log_snr(t) - 2 * math.log(3.0))
    assert sched.variance_preserving is False
    assert schedules.Shifted(schedules.get("vp-cosine"), 2.0).variance_preserving is True


def test_registry_gives_every_named_schedule_and_passes_schedules_through():
    assert schedules.available() == sorted(schedules.available())
    assert {"vp-linear", "vp-cosine", "ddpm-linear", "ve", "edm", "rectified-flow"} <= set(
        schedules.available()
    )
    sched = schedules.VE(0.02, 80.0)
    assert schedules.get(sched) is sched
    assert schedules.get("ve", sigma_max=80.0).sigma_max == 80.0
    assert schedules.get("ddpm-linear", num_steps=100).num_steps == 100
    assert schedules.get("ddpm-scaled-linear", num_steps=100).name == "ddpm-scaled-linear"
    with pytest.raises(ValueError):
        schedules.register("ve", schedules.VE)
    schedules.register("ve", schedules.VE, replace=True)
