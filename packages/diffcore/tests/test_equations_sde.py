"""The SDE view (Song et al. 2021) against closed forms: the forward drift and diffusion of the VP, sub-VP and
VE SDEs and of any schedule, the reverse-time drift, Euler-Maruyama on the VP SDE against DDPM's marginals,
and the probability-flow ODE and the reverse SDE against the exact marginals of a Gaussian mixture."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.sde import SDE, VESDE, VPSDE, SubVPSDE

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
TIMES = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.77, 0.99], dtype=F64)


def beta(t: torch.Tensor, b0: float = 0.1, b1: float = 20.0) -> torch.Tensor:
    """Song et al. 2021, Eq. 33: beta(t) = b0 + t (b1 - b0)."""
    return b0 + t * (b1 - b0)


# ----------------------------------------------------------------------------- forward SDEs


def test_vp_sde_is_dx_equals_minus_half_beta_x_dt_plus_sqrt_beta_dw():
    """Song et al. 2021, Eq. 11 with Eq. 33. (Dropping the 1/2 in the drift, f = -beta, makes the marginal
    mean exp(-int beta) instead of exp(-int beta / 2): 0.007 instead of 0.08 at t = 0.5.)"""
    sde = VPSDE(0.1, 20.0)
    torch.testing.assert_close(sde.f(TIMES), -0.5 * beta(TIMES), rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.g2(TIMES), beta(TIMES), rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.g(TIMES), beta(TIMES).sqrt(), rtol=1e-12, atol=0)


def test_sub_vp_sde_diffusion_is_beta_times_one_minus_exp_of_minus_twice_the_integral():
    """Song et al. 2021, Eq. 11 (sub-VP): g^2 = beta(t) (1 - exp(-2 int_0^t beta))."""
    sde = SubVPSDE(0.1, 20.0)
    integral = 0.1 * TIMES + 0.5 * 19.9 * TIMES**2
    torch.testing.assert_close(sde.f(TIMES), -0.5 * beta(TIMES), rtol=1e-12, atol=0)
    torch.testing.assert_close(
        sde.g2(TIMES), beta(TIMES) * (1 - torch.exp(-2 * integral)), rtol=1e-10, atol=1e-15
    )


def test_ve_sde_is_driftless_with_g_squared_the_derivative_of_sigma_squared():
    """Song et al. 2021, Eq. 30-31: sigma(t) = s_min (s_max / s_min)^t, g^2 = d sigma^2 / dt =
    2 sigma^2 log(s_max / s_min). (g^2 = d sigma / dt instead misses by a factor 2 sigma.)"""
    sde = VESDE(0.01, 50.0)
    sigma = 0.01 * 5000.0**TIMES
    torch.testing.assert_close(sde.f(TIMES), torch.zeros_like(TIMES))
    torch.testing.assert_close(sde.g2(TIMES), 2 * sigma**2 * math.log(5000.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.marginal(0.3)[1], torch.tensor(0.01 * 5000.0**0.3, dtype=F64))


def test_sde_of_the_rectified_flow_path_has_its_closed_form_coefficients():
    """alpha = 1 - t, sigma = t: f = d log alpha / dt = -1 / (1 - t), g^2 = d sigma^2/dt - 2 f sigma^2 = 2 t / (1 - t)."""
    sde = SDE.from_schedule(schedules.get("rectified-flow"))
    t = TIMES[1:]
    torch.testing.assert_close(sde.f(t), -1 / (1 - t), rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.g2(t), 2 * t / (1 - t), rtol=1e-10, atol=0)


def test_drift_is_f_times_x_with_one_time_per_sample():
    sde = VPSDE()
    x = torch.randn(3, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    torch.testing.assert_close(sde.drift(x, t), (-0.5 * beta(t))[:, None, None] * x)
    torch.testing.assert_close(sde.drift(x, 0.5), -0.5 * float(beta(torch.tensor(0.5))) * x)


def test_prior_sample_has_the_marginal_spread_at_t_1():
    """For unit-variance data the marginal at t = 1 has variance alpha(1)^2 + sigma(1)^2 (VE: 1 + 50^2)."""
    sde = VESDE(0.01, 50.0)
    x = sde.prior_sample((100_000,), generator=torch.Generator().manual_seed(1), dtype=F64)
    assert float(x.std()) == pytest.approx(math.sqrt(1 + 50.0**2), rel=0.01)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_forward_sde_moments_reproduce_the_schedule_marginal(sde):
    """For dx = f x dt + g dW the mean obeys m' = f m and the variance v' = 2 f v + g^2; integrated (RK4, float64)
    from x0 = 1 they must give alpha(t) and sigma(t)^2 (plus sigma(0)^2 for VE, whose path starts at sigma_min)."""
    n = 500
    h = 1.0 / n
    m = torch.ones((), dtype=F64)
    v = sde.schedule.sigma(torch.zeros((), dtype=F64)) ** 2

    def rhs(t: float, m: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = sde.f(t)
        return f * m, 2 * f * v + sde.g2(t)

    for i in range(n):
        t = i * h
        k1 = rhs(t, m, v)
        k2 = rhs(t + h / 2, m + h / 2 * k1[0], v + h / 2 * k1[1])
        k3 = rhs(t + h / 2, m + h / 2 * k2[0], v + h / 2 * k2[1])
        k4 = rhs(t + h, m + h * k3[0], v + h * k3[1])
        m = m + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v = v + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    one = torch.ones((), dtype=F64)
    torch.testing.assert_close(m, sde.schedule.alpha(one), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(v, sde.schedule.sigma(one) ** 2, rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------- reverse-time SDE


@pytest.mark.parametrize(
    "sde", [VPSDE(), VESDE(), SDE.from_schedule(schedules.get("vp-cosine"))], ids=["vp", "ve", "cosine"]
)
def test_reverse_drift_is_f_x_minus_g_squared_times_the_score(sde):
    """Song et al. 2021, Eq. 6: the reverse-time drift is f x - g^2 grad log p_t(x), here with the score of
    N(m, v) noised, -(x - alpha m) / (alpha^2 v + sigma^2), written out. (The probability-flow drift,
    f x - g^2 score / 2, misses by g^2 |score| / 2.)"""
    m, v = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([0.3, 0.8], dtype=F64)
    den = GaussianMixture.gaussian(m, v).denoiser(sde.schedule, "eps")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    for t in (0.2, 0.6):
        a, s = (float(c) for c in sde.marginal(t))
        score = -(x - a * m) / (a * a * v + s * s)
        expected = float(sde.f(t)) * x - float(sde.g2(t)) * score
        torch.testing.assert_close(sde.reverse_drift(den, x, t), expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(
            sde.probability_flow(den, x, t), expected + 0.5 * float(sde.g2(t)) * score, rtol=1e-9, atol=1e-9
        )
    t = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=F64)
    a, s = sde.marginal(t)
    score = -(x - a[:, None] * m) / (a[:, None] ** 2 * v + s[:, None] ** 2)
    expected = sde.f(t)[:, None] * x - sde.g2(t)[:, None] * score
    torch.testing.assert_close(sde.reverse_drift(den, x, t), expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- discretisations


def _em_moments(num_steps: int) -> tuple[float, float]:
    """Run Euler-Maruyama of the library's VP SDE on DDPM's grid t_i = i / T from x0 = 1, propagating the exact
    mean and variance of the discrete chain x_i = x_{i-1} + drift h + g sqrt(h) z (linear, so the moments are
    exact), and return the largest gap to the DDPM table's alpha(t_i) and sigma(t_i) over the grid."""
    sde = VPSDE(0.1, 20.0)
    table = schedules.get("ddpm-linear", num_steps=num_steps)
    h = 1.0 / num_steps
    mean = torch.ones(1, dtype=F64)
    var = torch.zeros(1, dtype=F64)
    gap_a = gap_s = 0.0
    for i in range(1, num_steps + 1):
        s = torch.tensor((i - 1) / num_steps, dtype=F64)
        mean, var = mean + h * sde.drift(mean, s), (1 + h * sde.f(s)) ** 2 * var + h * sde.g2(s)
        t = torch.tensor(i / num_steps, dtype=F64)
        gap_a = max(gap_a, abs(float(mean) - float(table.alpha(t))))
        gap_s = max(gap_s, abs(math.sqrt(float(var)) - float(table.sigma(t))))
    return gap_a, gap_s


def test_euler_maruyama_on_the_vp_sde_reproduces_ddpm_marginals_to_first_order():
    """DDPM is the VP SDE discretised (Song et al. 2021, Sec. 3.4 and App. B): Euler-Maruyama with h = 1/T on
    beta(t) = 0.1 + 19.9 t reaches the DDPM table's alpha and sigma at every step up to an O(1/T) gap, which
    halves when T doubles. (With g^2 = beta / 2 the gap is 0.29 in sigma; with f = -beta, 0.22 in alpha.)"""
    a1, s1 = _em_moments(1000)
    a2, s2 = _em_moments(2000)
    assert a1 < 1.5e-3 and s1 < 3e-3, (a1, s1)  # measured 9.5e-4 and 2.4e-3
    assert 1.8 < a1 / a2 < 2.2 and 1.8 < s1 / s2 < 2.2, (a1 / a2, s1 / s2)


def test_euler_maruyama_samples_of_the_vp_sde_have_ddpm_marginals():
    """The same chain run on samples (library drift and g): mean and standard deviation of x_t for x0 = 0.7 at
    t = 0.3 and 1 agree with DDPM's sqrt(abar) x0 and sqrt(1 - abar) within 4 standard errors."""
    sde = VPSDE(0.1, 20.0)
    table = schedules.get("ddpm-linear")
    n = 40_000
    g = torch.Generator().manual_seed(3)
    x = torch.full((n,), 0.7, dtype=F64)
    for i in range(1, 1001):
        s = (i - 1) / 1000
        x = (
            x
            + sde.drift(x, s) / 1000
            + sde.g(s) * math.sqrt(1 / 1000) * torch.randn(n, generator=g, dtype=F64)
        )
        if i in (300, 1000):
            t = torch.tensor(i / 1000, dtype=F64)
            a, sig = float(table.alpha(t)), float(table.sigma(t))
            assert abs(float(x.mean()) - 0.7 * a) < 4 * sig / math.sqrt(n) + 2e-3
            assert abs(float(x.std()) - sig) < 4 * sig / math.sqrt(2 * n) + 3e-3


def _reverse(
    kind: str, sde: SDE, den, x: torch.Tensor, steps: int, generator=None
) -> dict[float, torch.Tensor]:
    """Integrate from t = 1 towards 0 and keep the states at t = 0.75, 0.5, 0.25: Euler-Maruyama on the reverse
    SDE, x <- x - h reverse_drift + g sqrt(h) z, or Heun on the probability-flow ODE."""
    h = 1.0 / steps
    kept = {}
    for i in range(steps, 0, -1):
        t = i * h
        if kind == "sde":
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x - h * sde.reverse_drift(den, x, t) + math.sqrt(float(sde.g2(t)) * h) * z
        else:
            d1 = sde.probability_flow(den, x, t)
            d2 = sde.probability_flow(den, x - h * d1, t - h)
            x = x - h * (d1 + d2) / 2
        if (i - 1) * 4 % steps == 0 and i - 1 > 0:
            kept[(i - 1) / steps] = x
    return kept


def test_probability_flow_ode_and_reverse_sde_give_the_exact_marginals_of_a_gaussian_mixture():
    """Song et al. 2021, Sec. 4.3: the PF-ODE and the reverse SDE share the marginals p_t. From exact samples of
    p_1, both reach the exact p_t at t = 0.75, 0.5, 0.25 on a 3-component mixture in 2D: sliced W2 to fresh
    exact samples within 2x the distance between two exact sample sets (0.04-0.05 here) and the mean
    log p_t of the samples within 0.05 of the exact one. (Euler-Maruyama with the probability-flow drift
    plus noise, a plausible slip, is off by SW2 1.3-1.9 and 4-9 nats.)"""
    gm = GaussianMixture.random(2, components=3, spread=2.0, seed=5)
    sde = VPSDE()
    den = gm.denoiser(sde.schedule, "eps")
    n = 4000

    def exact(t: float, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        a, s = (float(v) for v in sde.marginal(t))
        return a * gm.sample(n, generator=g) + s * torch.randn(n, 2, generator=g, dtype=F64)

    start = exact(1.0, 1)
    by_sde = _reverse("sde", sde, den, start, 500, torch.Generator().manual_seed(2))
    by_ode = _reverse("ode", sde, den, start, 100)
    for t in (0.75, 0.5, 0.25):
        ref, ref2 = exact(t, 10), exact(t, 11)
        floor = sliced_wasserstein(ref2, ref)
        target = float(gm.log_prob(ref, sde.schedule, t).mean())
        for name, xs in (("sde", by_sde[t]), ("ode", by_ode[t])):
            assert sliced_wasserstein(xs, ref) < 2 * floor, (name, t, sliced_wasserstein(xs, ref), floor)
            assert abs(float(gm.log_prob(xs, sde.schedule, t).mean()) - target) < 0.05, (name, t)
        assert sliced_wasserstein(by_sde[t], by_ode[t]) < 2 * floor
