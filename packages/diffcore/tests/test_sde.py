"""The SDE view agrees with the schedules, and the seed's discrete equations hold numerically."""

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.sde import SDE, VESDE, VPSDE, SubVPSDE

T = torch.linspace(0.02, 0.98, 9, dtype=torch.float64)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_paper_sdes_match_the_coefficients_derived_from_their_marginals(sde):
    derived = SDE.from_schedule(sde.schedule)
    torch.testing.assert_close(sde.f(T), derived.f(T))
    torch.testing.assert_close(sde.g2(T), derived.g2(T))


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_marginal_variance_solves_the_moment_ode(sde):
    """For dx = f x dt + g dW, Var' = 2 f Var + g^2 with Var(0) = 0: integrate and compare with sigma(t)^2."""
    ts = torch.linspace(0.0, 1.0, 20001, dtype=torch.float64)
    h = ts[1] - ts[0]
    var = torch.zeros((), dtype=torch.float64)
    var = var + sde.schedule.sigma(ts[0]) ** 2
    for a, b in zip(ts[:-1:50], ts[50::50]):  # coarse RK2 over blocks of 50 fine steps
        hh = b - a
        k1 = 2 * sde.f(a) * var + sde.g2(a)
        k2 = 2 * sde.f(b) * (var + hh * k1) + sde.g2(b)
        var = var + hh / 2 * (k1 + k2)
    assert float(h) > 0
    torch.testing.assert_close(
        var, sde.schedule.sigma(torch.tensor(1.0, dtype=torch.float64)) ** 2, rtol=2e-3, atol=0
    )


def test_probability_flow_equals_the_path_velocity():
    gm = GaussianMixture.random(3, components=2, seed=1)
    for name in ("vp-linear", "sub-vp", "ve", "rectified-flow", "vp-cosine"):
        den = gm.denoiser(name, "eps")
        sde = SDE.from_schedule(den.schedule)
        x = torch.randn(5, 3, dtype=torch.float64)
        torch.testing.assert_close(
            sde.probability_flow(den, x, 0.4), den.velocity(x, 0.4), rtol=1e-7, atol=1e-9
        )


def test_iterating_ddpm_transitions_equals_the_closed_form_marginal():
    """q(x_t | x_0) = N(sqrt(abar_t) x0, 1 - abar_t) is the composition of q(x_i | x_{i-1}) (Ho et al. Eq. 4):
    the moment recursion of the one-step transitions reproduces the schedule at every step, and a Monte Carlo
    run of the transitions agrees within its standard error."""
    sched = schedules.get("ddpm-linear", num_steps=100)
    betas = sched.betas
    mean, var = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for i, b in enumerate(betas, start=1):
        mean, var = torch.sqrt(1 - b) * mean, (1 - b) * var + b
        t = torch.tensor(i / 100, dtype=torch.float64)
        torch.testing.assert_close(mean, sched.alpha(t))
        torch.testing.assert_close(var.sqrt(), sched.sigma(t))
    g = torch.Generator().manual_seed(0)
    x = torch.full((20_000,), 0.7, dtype=torch.float64)
    for b in betas[:30]:
        x = torch.sqrt(1 - b) * x + torch.sqrt(b) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    se = float(sched.sigma(t)) / 20_000**0.5
    assert abs(float(x.mean()) - 0.7 * float(sched.alpha(t))) < 4 * se
    assert float(x.std()) == pytest.approx(float(sched.sigma(t)), rel=0.02)


def test_discretised_vp_sde_is_ddpm():
    """DDPM's linear table is the VP SDE's beta(t) sampled on the grid (beta_i = beta((i-1)/(T-1)) / T), and
    Euler-Maruyama of the VP SDE with step 1/T, x + (-beta x / 2) / T + sqrt(beta / T) z, is DDPM's
    transition sqrt(1 - beta_i) x + sqrt(beta_i) z to first order; their marginals agree."""
    sde = VPSDE(0.1, 20.0)
    table = schedules.get("ddpm-linear")
    i = torch.arange(1, 1001, dtype=torch.float64)
    torch.testing.assert_close(sde.beta((i - 1) / 999) / 1000, table.betas)
    em_mean = 1 - 0.5 * table.betas
    assert float((em_mean - torch.sqrt(1 - table.betas)).abs().max()) <= float((table.betas**2).max())
    t = i / 1000
    torch.testing.assert_close(sde.schedule.alpha(t), table.alpha(t), rtol=2e-2, atol=1e-4)
