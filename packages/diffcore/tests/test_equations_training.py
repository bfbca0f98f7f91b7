"""Training objectives against closed forms: DDPM's L_simple, the flow-matching and conditional flow-matching
losses and the equality of their gradients (through the library's objective), and Min-SNR-gamma (and the other
weightings) for eps, x0 and v targets, alone and inside the objective."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.training import objectives, weighting
from diffcore.training import time_sampling as timesteps
from diffcore.training.objectives import DiffusionObjective

F64 = torch.float64


class Recorder:
    """A "network" ``out = k * x_t + c * t`` that remembers its last inputs."""

    def __init__(self, k: float = 0.3, c: float = 0.2) -> None:
        self.k, self.c = k, c
        self.x_t: torch.Tensor | None = None
        self.t: torch.Tensor | None = None

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.x_t, self.t = x_t, t
        return self.k * x_t + self.c * t.reshape((-1,) + (1,) * (x_t.ndim - 1)).to(x_t.dtype)


def replay(obj: DiffusionObjective, x0: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(t, noise)`` an objective draws from ``Generator().manual_seed(seed)``: t first, then the noise."""
    g = torch.Generator().manual_seed(seed)
    t = obj.time_sampler(x0.shape[0], generator=g)
    return t, torch.randn(x0.shape, generator=g, dtype=x0.dtype)


# ----------------------------------------------------------------------------- L_simple


def test_l_simple_is_the_eps_mse_at_a_uniform_ddpm_step():
    """Ho et al. 2020, Eq. 14: E_{i ~ U{1..T}, x0, eps} ||eps - eps_theta(sqrt(abar_i) x0 + sqrt(1 - abar_i) eps, i)||^2,
    abar written out here from the linear betas. (The network fed sqrt(1 - abar) x0 + sqrt(abar) eps, swapped
    coefficients, misses x_t by up to 2.)"""
    obj = objectives.ddpm("ddpm-linear")
    x0 = torch.randn(64, 3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    net = Recorder()
    loss, logs = obj(net, x0, generator=torch.Generator().manual_seed(1))
    t, eps = replay(obj, x0, 1)
    i = torch.round(t.double() * 1000).long()
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=F64), 0)[i - 1][:, None, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    torch.testing.assert_close(net.x_t, x_t, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(net.t, i.double() / 1000)
    eps_hat = net(x_t, i.double() / 1000)
    expected = ((eps_hat - eps) ** 2).mean()  # uniform weight: every sample and dimension counts the same
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(logs["loss_unweighted"], expected, rtol=1e-6, atol=0)


def test_ddpm_steps_are_uniform_on_one_to_t():
    """Algorithm 1 of Ho et al.: i ~ Uniform({1, ..., T}); t = i / T is never 0 (pure data) and reaches 1."""
    t = timesteps.Discrete(1000)(200_000, generator=torch.Generator().manual_seed(2)).double()
    i = torch.round(t * 1000)
    torch.testing.assert_close(t * 1000, i, rtol=0, atol=1e-3)
    assert float(i.min()) == 1 and float(i.max()) == 1000
    assert float(i.mean()) == pytest.approx(500.5, abs=4 * 288.7 / math.sqrt(200_000))


# ----------------------------------------------------------------------------- flow matching


class Linear(torch.nn.Module):
    """v_theta(x, t) = [x, t x, t, 1] @ theta: enough freedom for a non-trivial gradient."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.theta = torch.nn.Parameter(torch.randn(2 * dim + 2, dim, generator=g, dtype=F64) * 0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype)[:, None]
        return torch.cat([x, t * x, t, torch.ones_like(t)], 1) @ self.theta


def test_conditional_flow_matching_loss_is_lipman_et_al_eq_23():
    """On the OT path x_t = (1 - t) x0 + t eps (our time direction) the conditional velocity is eps - x0.
    (The time direction of the paper, target x0 - eps, misses by 2 |eps - x0|.)"""
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(32, 2, generator=g, dtype=F64), torch.randn(32, 2, generator=g, dtype=F64)
    t = torch.rand(32, generator=g, dtype=F64)
    net = Linear(2)
    x_t = (1 - t)[:, None] * x0 + t[:, None] * eps
    expected = ((net(x_t, t) - (eps - x0)) ** 2).mean()
    torch.testing.assert_close(objectives.conditional_flow_matching_loss(net, x0, eps, t), expected)
    # on a VP path the conditional velocity is d_alpha x0 + d_sigma eps
    vp = schedules.get("vp-cosine")
    a, s, da, ds = (c[:, None] for c in vp.coefficients(t))
    expected = ((net(a * x0 + s * eps, t) - (da * x0 + ds * eps)) ** 2).mean()
    torch.testing.assert_close(objectives.conditional_flow_matching_loss(net, x0, eps, t, vp), expected)


def test_flow_matching_loss_is_the_mse_to_the_marginal_velocity():
    g = torch.Generator().manual_seed(4)
    x_t, u = torch.randn(16, 3, generator=g, dtype=F64), torch.randn(16, 3, generator=g, dtype=F64)
    t = torch.rand(16, generator=g, dtype=F64)
    net = Linear(3)
    torch.testing.assert_close(objectives.flow_matching_loss(net, x_t, t, u), ((net(x_t, t) - u) ** 2).mean())


def test_flow_matching_objective_computes_the_cfm_loss_on_its_draws():
    obj = objectives.flow_matching()
    x0 = torch.randn(50, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    net = Linear(2)
    loss, _ = obj(net, x0, generator=torch.Generator().manual_seed(6))
    t, eps = replay(obj, x0, 6)
    torch.testing.assert_close(loss, objectives.conditional_flow_matching_loss(net, x0, eps, t.double()))


def gaussian_rf_velocity(
    x_t: torch.Tensor, t: torch.Tensor, m: torch.Tensor, s2: torch.Tensor
) -> torch.Tensor:
    """Marginal velocity E[eps - x0 | x_t] of data N(m, diag(s2)) on the rectified-flow path, in closed form:
    x_t ~ N((1 - t) m, (1 - t)^2 s2 + t^2), Cov(x0, x_t) = (1 - t) s2, Cov(eps, x_t) = t."""
    t = t[:, None]
    var = (1 - t) ** 2 * s2 + t**2
    r = x_t - (1 - t) * m
    return t / var * r - (m + (1 - t) * s2 / var * r)


def test_cfm_gradient_equals_the_fm_gradient_through_the_objective():
    """Lipman et al. 2023, Theorem 2, on Gaussian data where the marginal velocity is known in closed form: the
    gradient of the library's flow-matching objective (CFM on its own draws) equals the gradient of L_FM at the
    same x_t, within Monte Carlo error (the two differ by a zero-mean term). The closed-form velocity also
    equals the exact denoiser's. Measured gap 0.45% of the gradient's norm; the target x0 - eps moves it by 230%,
    the conditional velocity of another path (VP-linear) by 40%."""
    m, s2 = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.3, 0.8], dtype=F64)
    gm = GaussianMixture.gaussian(m, s2)
    n = 200_000
    x0 = gm.sample(n, generator=torch.Generator().manual_seed(7))
    obj = objectives.flow_matching()
    net = Linear(2, seed=1)
    loss, _ = obj(net, x0, generator=torch.Generator().manual_seed(8))
    (g_cfm,) = torch.autograd.grad(loss, net.theta)

    t, eps = replay(obj, x0, 8)
    t = t.double()
    x_t = (1 - t)[:, None] * x0 + t[:, None] * eps
    u = gaussian_rf_velocity(x_t, t, m, s2)
    torch.testing.assert_close(
        gm.denoiser("rectified-flow", "velocity").velocity(x_t[:100], t[:100]), u[:100]
    )
    (g_fm,) = torch.autograd.grad(objectives.flow_matching_loss(net, x_t, t, u), net.theta)
    assert float((g_cfm - g_fm).norm()) < 0.02 * float(g_fm.norm()), (g_cfm, g_fm)


# ----------------------------------------------------------------------------- Min-SNR and other weightings


def hang_et_al_min_snr(snr: torch.Tensor, gamma: float, target: str) -> torch.Tensor:
    """Hang et al. 2023, Eq. 10 and diffusers' train_text_to_image.py: min(SNR, gamma) on the x0 error, divided
    by SNR for an eps target and by SNR + 1 for a v target."""
    w = torch.minimum(snr, torch.full_like(snr, gamma))
    return {"x0": w, "eps": w / snr, "v": w / (snr + 1)}[target]


SNRS = torch.tensor([1e-3, 0.2, 1.0, 4.9, 5.0, 5.1, 30.0, 1e4], dtype=F64)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_is_hang_et_al_eq_10(target, gamma):
    """(Forgetting the conversion, min(SNR, gamma) on an eps target, is off by a factor SNR, up to 1e4 here.)"""
    w = weighting.min_snr(gamma)(SNRS.log(), target)
    torch.testing.assert_close(w, hang_et_al_min_snr(SNRS, gamma, target), rtol=1e-12, atol=0)


def test_min_snr_limits_at_snr_zero_and_infinity():
    lam = torch.tensor([-math.inf, math.inf], dtype=F64)
    w = weighting.min_snr(5.0)
    torch.testing.assert_close(w(lam, "eps"), torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(w(lam, "score"), torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(w(lam, "x0"), torch.tensor([0.0, 5.0], dtype=F64))
    torch.testing.assert_close(w(lam, "v"), torch.tensor([0.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="gamma"):
        weighting.min_snr(0.0)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_min_snr_inside_the_objective_weights_each_sample_by_hang_et_al(target):
    """The objective's loss is mean_b w(SNR(t_b)) ||target error_b||^2 / D with Hang et al.'s weight, on per-sample
    times drawn uniformly (replayed from the same generator); SNR = alpha^2 / sigma^2 written from the cosine
    schedule's closed form."""
    obj = DiffusionObjective(
        "vp-cosine", prediction=target, weighting="min-snr", weighting_options={"gamma": 5.0}
    )
    x0 = torch.randn(256, 4, dtype=F64, generator=torch.Generator().manual_seed(9))
    net = Recorder()
    loss, _ = obj(net, x0, generator=torch.Generator().manual_seed(10))
    t, eps = replay(obj, x0, 10)
    t = t.double()
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)
    a, s = f[:, None], (1 - f**2).sqrt()[:, None]
    x_t = a * x0 + s * eps
    truth = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[target]
    per_sample = ((net(x_t, t) - truth) ** 2).mean(1)
    expected = (hang_et_al_min_snr(f**2 / (1 - f**2), 5.0, target) * per_sample).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert not torch.allclose(loss, per_sample.mean(), rtol=1e-2)  # the weight does something here


def test_edm_weight_is_karras_et_al_eq_8_on_every_target():
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 on the x0 error (sigma = exp(-log_snr / 2)); divided by
    SNR on eps and by SNR + 1 on v."""
    sd = 0.5
    snr = SNRS
    x0_w = (1 / snr + sd**2) / (sd**2 / snr)
    w = weighting.edm(sd)
    torch.testing.assert_close(w(snr.log(), "x0"), x0_w, rtol=1e-10, atol=0)
    torch.testing.assert_close(w(snr.log(), "eps"), x0_w / snr, rtol=1e-10, atol=0)
    torch.testing.assert_close(w(snr.log(), "v"), x0_w / (snr + 1), rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="sigma_data"):
        weighting.edm(0.0)


def test_sigmoid_weight_is_kingma_and_gao_on_the_eps_error():
    """Kingma & Gao 2023: w_eps = sigmoid(b - log_snr); on x0 that is w_eps * SNR, on v w_eps * SNR / (SNR + 1)."""
    lam = SNRS.log()
    w_eps = torch.sigmoid(-3.0 - lam)
    w = weighting.sigmoid(-3.0)
    torch.testing.assert_close(w(lam, "eps"), w_eps, rtol=1e-10, atol=0)
    torch.testing.assert_close(w(lam, "x0"), w_eps * SNRS, rtol=1e-10, atol=0)
    torch.testing.assert_close(w(lam, "v"), w_eps * SNRS / (SNRS + 1), rtol=1e-10, atol=0)


def test_uniform_weight_and_the_weighting_registry():
    lam = SNRS.log()
    torch.testing.assert_close(weighting.uniform(lam, "velocity"), torch.ones_like(lam))
    with pytest.raises(ValueError, match="target"):
        weighting.uniform(lam, "noise")
    assert weighting.available() == ["edm", "likelihood", "min-snr", "sigmoid", "uniform"]
    torch.testing.assert_close(weighting.get("min-snr", gamma=2.0)(lam, "x0"), torch.clamp(SNRS, max=2.0))
    with pytest.raises(ValueError, match="likelihood"):
        weighting.get("likelihood")


def test_huge_weights_are_capped_instead_of_overflowing():
    """Weights are exp of a log-weight clamped at 80: finite even at log_snr = 1e4."""
    w = weighting.edm(0.5)(torch.tensor([1e4], dtype=F64), "x0")
    torch.testing.assert_close(w, torch.tensor([math.exp(80.0)], dtype=F64))


EDGE_LIMITS = {  # (weighting, target) -> weights at SNR = 0 and SNR = inf, the limits of the closed forms above
    ("min-snr", "x0"): (0.0, 5.0),
    ("min-snr", "eps"): (1.0, 0.0),
    ("min-snr", "v"): (0.0, 0.0),
    ("edm", "x0"): (4.0, math.exp(80.0)),  # SNR + 1 / sd^2, capped
    ("edm", "eps"): (math.exp(80.0), 1.0),  # (SNR + 4) / SNR
    ("edm", "v"): (4.0, 1.0),  # (SNR + 4) / (SNR + 1)
    ("sigmoid", "x0"): (0.0, math.exp(-3.0)),  # sigmoid(b - lam) SNR -> e^b
    ("sigmoid", "eps"): (1.0, 0.0),
    ("sigmoid", "v"): (0.0, 0.0),
}


@pytest.mark.parametrize("name, target", list(EDGE_LIMITS), ids=[f"{n}-{t}" for n, t in EDGE_LIMITS])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_weights_at_snr_zero_and_infinity_are_the_limits_of_their_formulas(name, target, dtype):
    """At t = 0 (SNR = inf) and at zero terminal SNR. Before the fix EDM's eps weight and the sigmoid's x0 weight
    were 0 at SNR = inf (inf - inf -> NaN -> 0) instead of their limits 1 and e^b."""
    w = weighting.get(name)(torch.tensor([-math.inf, math.inf], dtype=dtype), target)
    torch.testing.assert_close(w, torch.tensor(EDGE_LIMITS[name, target], dtype=dtype), rtol=1e-6, atol=0)


def test_a_nan_log_snr_gives_weight_zero():
    for name in ("min-snr", "edm", "sigmoid"):
        assert float(weighting.get(name)(torch.tensor([math.nan]), "x0")) == 0.0


# ----------------------------------------------------------------------------- the rest of the objective surface


def test_a_dict_batch_gives_x0_to_the_path_and_the_rest_to_the_model():
    seen = {}

    def net(x_t, t, y):
        seen["y"] = y
        return torch.zeros_like(x_t)

    x0, y = torch.randn(8, 2, dtype=F64), torch.arange(8)
    loss, _ = objectives.x0_loss("vp-cosine")(
        net, {"x": x0, "y": y}, generator=torch.Generator().manual_seed(0)
    )
    assert seen["y"] is y
    torch.testing.assert_close(loss, (x0**2).mean())  # uniform weight, target x0, output 0
    with pytest.raises(TypeError, match="batch"):
        objectives.ddpm()(net, {"y": y})


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_condition_dropout_accepts_probabilities_zero_and_one(p):
    seen = {}

    def net(x_t, t, y):
        seen["y"] = y
        return torch.zeros_like(x_t)

    obj = DiffusionObjective("vp-cosine", cond_dropout=p, null_cond={"y": -1})
    obj(net, {"x": torch.randn(16, 2), "y": torch.arange(16)}, generator=torch.Generator().manual_seed(0))
    assert bool((seen["y"] == -1).all()) if p == 1.0 else torch.equal(seen["y"], torch.arange(16))


@pytest.mark.parametrize("p", [-1e-9, 1.0 + 1e-9])
def test_condition_dropout_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match="cond_dropout"):
        DiffusionObjective("vp-cosine", cond_dropout=p, null_cond={"y": -1})


LIKELIHOOD_WEIGHTS = {  # -1/2 d log_snr / dt at t = 0.5, written out (Kingma et al. 2021, Eq. 17)
    "ve(1, 2)": (lambda: schedules.VE(1.0, 2.0), math.log(2.0)),  # log_snr = -2 log sigma: below 1
    "rectified-flow": (
        lambda: schedules.get("rectified-flow"),
        1 / (0.5 * 0.5),
    ),  # log_snr = 2 log((1 - t) / t)
    "vp-linear": (
        lambda: schedules.get("vp-linear"),
        (0.1 + 19.9 * 0.5) / (2 * (1 - math.exp(-(0.1 * 0.5 + 0.5 * 19.9 * 0.25)))),  # beta / (2 (1 - abar))
    ),
}


@pytest.mark.parametrize("name", list(LIKELIHOOD_WEIGHTS))
def test_likelihood_weighting_is_minus_half_the_log_snr_rate_on_the_eps_error(name):
    make, weight = LIKELIHOOD_WEIGHTS[name]
    obj = DiffusionObjective(
        make(), prediction="eps", time_sampler=timesteps.Constant(0.5), weighting="likelihood"
    )
    loss, logs = obj(
        lambda x, t: torch.zeros_like(x), torch.randn(64, 2, dtype=F64), generator=torch.Generator()
    )
    assert float(loss) == pytest.approx(weight * float(logs["loss_unweighted"]), rel=1e-6)


def test_likelihood_weight_is_zero_where_the_elbo_weight_is_infinite():
    """At t = 0 (sigma = 0) and at zero terminal SNR (alpha = 0), -1/2 d log_snr/dt is infinite: the objective
    gives those samples weight 0 instead of inf."""
    sched = schedules.ZeroTerminalSNR(schedules.get("ddpm-scaled-linear"))
    for t in (0.0, 1.0):
        obj = DiffusionObjective(
            sched, prediction="v", time_sampler=timesteps.Constant(t), weighting="likelihood"
        )
        loss, logs = obj(lambda x, tt: torch.zeros_like(x), torch.randn(8, 2), generator=torch.Generator())
        assert float(loss) == 0.0 and float(logs["loss_unweighted"]) > 0


def test_ddpm_objective_samples_a_thousand_steps_on_a_continuous_schedule():
    t = objectives.ddpm("vp-linear").time_sampler(5000, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(t * 1000, torch.round(t * 1000), rtol=0, atol=1e-3)
    assert float((t * 1000).max()) == pytest.approx(1000, abs=1e-3) and float((t * 1000).min()) >= 0.999


def test_score_matching_single_level_is_sigma_max_and_two_levels_are_the_ends():
    """num_scales = 1: denoising score matching at sigma_max only (Vincent 2011); 2: NCSN's two levels."""
    one = objectives.score_matching(sigma_min=0.01, sigma_max=10.0, num_scales=1)
    torch.testing.assert_close(
        one.schedule.sigma(one.time_sampler(4).double()), torch.full((4,), 10.0, dtype=F64)
    )
    two = objectives.score_matching(sigma_min=0.01, sigma_max=10.0, num_scales=2)
    t = two.time_sampler(400, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.unique(t).tolist()) == [0.5, 1.0]
    with pytest.raises(ValueError, match="num_scales"):
        objectives.score_matching(num_scales=0)
