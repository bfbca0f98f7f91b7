"""Objectives, weightings and training-time samplers against closed forms."""

import math

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.predictions import PathCoefficients, from_x0_eps
from diffcore.training import objectives, weighting
from diffcore.training import time_sampling as timesteps
from diffcore.training.objectives import DiffusionObjective, drop_conditions
from diffcore.training.ot import ot_permutation

# ----------------------------------------------------------------------------- time samplers


@pytest.mark.parametrize(
    "name", ["uniform", "logit-normal", "u-shaped", "edm-lognormal", "discrete", "constant"]
)
def test_time_samplers_stay_in_the_unit_interval(name):
    t = timesteps.get(name)(4000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (4000,) and bool(((t >= 0) & (t <= 1)).all())


def test_u_shaped_matches_its_cdf():
    a = 4.0
    t = timesteps.UShaped(a)(20000, generator=torch.Generator().manual_seed(1)).double().sort().values
    u = 2 * t - 1
    cdf = (torch.sinh(a * u) + math.sinh(a)) / (2 * math.sinh(a))
    empirical = torch.arange(1, len(t) + 1, dtype=torch.float64) / len(t)
    assert float((cdf - empirical).abs().max()) < 0.015  # Kolmogorov-Smirnov at n = 20000


def test_logit_normal_and_edm_lognormal_moments():
    g = torch.Generator().manual_seed(2)
    t = timesteps.LogitNormal(m=0.5, s=0.7)(20000, generator=g).double()
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean()) - 0.5) < 0.02 and abs(float(logit.std()) - 0.7) < 0.02
    sched = schedules.get("vp-cosine")
    t = timesteps.EDMLogNormal(sched, p_mean=-1.2, p_std=1.2)(20000, generator=g).double()
    ln_sigma = -0.5 * sched.log_snr(t)
    assert abs(float(ln_sigma.mean()) + 1.2) < 0.03


def test_stratified_uniform_has_one_point_per_stratum():
    t = timesteps.Uniform(stratified=True)(64, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount((t * 64).long().clamp(max=63), minlength=64)
    assert bool((counts == 1).all())


# ----------------------------------------------------------------------------- weightings


def test_min_snr_formula_and_edges():
    lam = torch.tensor([-math.inf, -3.0, 0.0, math.log(5.0), 4.0, math.inf], dtype=torch.float64)
    snr = torch.exp(lam)
    gamma = 5.0
    w = weighting.min_snr(gamma)
    expected_eps = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64)) / snr
    expected_eps[0] = 1.0  # limit SNR -> 0: min(SNR, gamma) / SNR -> 1
    torch.testing.assert_close(w(lam, "eps"), expected_eps.nan_to_num(0.0))
    expected_v = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64)) / (snr + 1)
    torch.testing.assert_close(w(lam, "v"), expected_v.nan_to_num(1.0))
    for target in ("eps", "x0", "v", "velocity", "score"):
        assert torch.isfinite(w(lam, target)).all()
        assert torch.isfinite(weighting.edm()(lam, target)).all()
        assert torch.isfinite(weighting.sigmoid()(lam, target)).all()


def test_edm_weight_formula():
    sigma = torch.tensor([0.1, 0.5, 3.0], dtype=torch.float64)
    lam = -2 * torch.log(sigma)
    expected = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(weighting.edm(0.5)(lam, "x0"), expected)


# ----------------------------------------------------------------------------- objectives


def _exact_net(gm, sched, prediction):
    return gm.network(sched, prediction)


@pytest.mark.parametrize(
    "make",
    [
        lambda: objectives.ddpm("ddpm-linear"),
        lambda: objectives.v_loss("vp-cosine"),
        lambda: objectives.x0_loss("vp-linear"),
        lambda: objectives.flow_matching(),
        lambda: objectives.rectified_flow(),
        lambda: DiffusionObjective("vp-cosine", prediction="v", target="eps"),
    ],
)
def test_exact_denoiser_attains_the_analytic_minimum(make):
    """For Gaussian data N(0, s^2) the minimum of the eps-MSE at t is alpha^2 s^2 / (alpha^2 s^2 + sigma^2)
    per dimension; every other target's minimum follows from the same posterior variance."""
    obj = make()
    s2 = 0.3
    gm = GaussianMixture.gaussian(torch.zeros(2), torch.full((2,), s2))
    net = _exact_net(gm, obj.schedule, obj.prediction)
    g = torch.Generator().manual_seed(0)
    x0 = gm.sample(40_000, generator=g)
    obj.time_sampler = timesteps.Constant(0.35)
    loss, _ = obj(net, x0, generator=g)
    c = PathCoefficients.at(obj.schedule, torch.tensor(0.35, dtype=torch.float64), 1)
    a, s = float(c.alpha), float(c.sigma)
    # posterior: Var(x0 | x_t) = s2 sigma^2 / (alpha^2 s2 + sigma^2); the target is affine in (x0, eps) with
    # eps = (x_t - alpha x0)/sigma, so its error variance is |k|^2 Var(x0 | x_t) for the target's x0 factor k.
    var_x0 = s2 * s**2 / (a**2 * s2 + s**2)
    k = {
        "eps": -a / s,
        "x0": 1.0,
        "v": -(a * a / s + s),
        "velocity": float(c.d_alpha) - float(c.d_sigma) * a / s,
    }[obj.target]
    assert float(loss) == pytest.approx(k**2 * var_x0, rel=0.02)


@pytest.mark.parametrize("t", [0.0, 1.0])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity"])
def test_losses_are_finite_at_the_edges_and_zero_terminal_snr(t, prediction):
    sched = schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))
    for weight in ("uniform", "min-snr", "edm", "likelihood"):
        obj = DiffusionObjective(
            sched, prediction=prediction, time_sampler=timesteps.Constant(t), weighting=weight
        )
        loss, _ = obj(lambda x, tt: torch.zeros_like(x), torch.randn(8, 3))
        assert torch.isfinite(loss), (weight, prediction, t)


def test_likelihood_weighting_is_minus_half_dlogsnr_on_eps():
    sched = schedules.get("vp-linear")
    obj = DiffusionObjective(
        sched, prediction="eps", time_sampler=timesteps.Constant(0.5), weighting="likelihood"
    )
    x0 = torch.randn(4096, 2, dtype=torch.float64)
    loss, logs = obj(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.5 - 1e-6, 0.5 + 1e-6], dtype=torch.float64)
    dlam = float((sched.log_snr(t[1]) - sched.log_snr(t[0])) / 2e-6)
    assert float(loss) == pytest.approx(-0.5 * dlam * float(logs["loss_unweighted"]), rel=1e-4)


def test_cfm_gradient_equals_marginal_flow_matching_gradient():
    """Lipman et al. 2023, Theorem 2: the conditional and marginal FM losses have the same gradient."""
    gm = GaussianMixture.random(2, components=3, seed=4)
    sched = schedules.get("rectified-flow")
    g = torch.Generator().manual_seed(0)
    n = 100_000
    x0 = gm.sample(n, generator=g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
    xt = (1 - t)[:, None] * x0 + t[:, None] * eps
    features = torch.cat([xt, t[:, None], torch.ones(n, 1, dtype=torch.float64)], 1)
    theta = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    v = features @ theta
    cfm = ((v - (eps - x0)) ** 2).sum(1).mean()
    marginal = from_x0_eps(*gm.x0_eps(xt, sched, t), "velocity", PathCoefficients.at(sched, t, 2))
    fm = ((v - marginal) ** 2).sum(1).mean()
    (g_cfm,) = torch.autograd.grad(cfm, theta, retain_graph=True)
    (g_fm,) = torch.autograd.grad(fm, theta)
    torch.testing.assert_close(g_cfm, g_fm, rtol=0.03, atol=0.01)


def test_condition_dropout_replaces_whole_samples():
    y = torch.arange(1000)
    ctx = torch.ones(1000, 3, 4)
    g = torch.Generator().manual_seed(0)
    out = drop_conditions(
        {"y": y, "context": ctx}, {"y": 10_000, "context": lambda c: torch.zeros_like(c)}, 0.3, g
    )
    dropped = out["y"] == 10_000
    assert 0.25 < float(dropped.float().mean()) < 0.35
    assert bool((out["context"][dropped] == 0).all()) and bool((out["context"][~dropped] == 1).all())
    assert drop_conditions({"y": y}, {"y": 0}, 0.0)["y"] is y
    with pytest.raises(ValueError, match="null_cond"):
        DiffusionObjective("vp-cosine", cond_dropout=0.1)


def test_condition_dropout_null_values_take_the_conditions_dtype():
    """A scalar null becomes the entry's dtype (an int label stays int; a float 0 on bf16 stays bf16); a
    tensor null of one sample's shape is broadcast over the dropped samples."""
    g = torch.Generator().manual_seed(1)
    y, pooled = torch.arange(400), torch.ones(400, 8, dtype=torch.bfloat16)
    null_embedding = torch.full((8,), -2.0)
    out = drop_conditions({"y": y, "pooled": pooled}, {"y": 7.0, "pooled": null_embedding}, 0.5, g)
    assert out["y"].dtype == torch.long and out["pooled"].dtype == torch.bfloat16
    dropped = out["pooled"][:, 0] == -2
    assert 100 < int(dropped.sum()) < 300
    assert bool((out["y"][dropped] == 7).all()) and bool((out["y"][~dropped] == y[~dropped]).all())
    assert bool((out["pooled"][~dropped] == 1).all())
    scale = drop_conditions({"s": torch.ones(400)}, {"s": 0}, 1.0, g)["s"]
    assert scale.dtype == torch.float32 and not bool(scale.any())


def test_ot_coupling_is_a_permutation_that_lowers_transport_cost():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    perm = ot_permutation(x0, noise)
    assert sorted(perm.tolist()) == list(range(64))
    assert float(((x0 - noise[perm]) ** 2).sum()) < float(((x0 - noise) ** 2).sum())


def test_score_matching_multiscale_uses_geometric_levels():
    obj = objectives.score_matching(sigma_min=0.01, sigma_max=10.0, num_scales=10)
    t = obj.time_sampler(1000, generator=torch.Generator().manual_seed(0))
    sigmas = torch.unique(obj.schedule.sigma(t.double()))
    ratios = sigmas[1:] / sigmas[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 1000 ** (1 / 10)), rtol=1e-5, atol=0)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="prediction"):
        DiffusionObjective("vp-cosine", prediction="noise")
    with pytest.raises(ValueError, match="time_sampler"):
        DiffusionObjective("vp-cosine", time_sampler="sometimes")
    with pytest.raises(ValueError, match="weighting"):
        DiffusionObjective("vp-cosine", weighting="heavy")
    with pytest.raises(ValueError, match="model output"):
        objectives.ddpm()(lambda x, t: x[:, :1], torch.randn(4, 3))
    with pytest.raises(TypeError, match="batch"):
        objectives.ddpm()(lambda x, t: x, [1, 2])
