"""Guidance, LoRA, the sampler steps and reflow against closed forms: classifier-free guidance (Ho & Salimans
2022, Eq. 6) and its rescale and interval, classifier guidance, LoRA's W + (alpha / r) B A, DDIM's step and its
determinism at eta = 0 under any generator, the pieces of ``diffcore.sampling.steps``, and reflow straightening
the paths of Gaussian data."""

from __future__ import annotations

import math

import diffcore
import pytest
import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance, ClassifierGuidance
from diffcore.paths import schedules, transitions
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.denoiser import Denoiser
from diffcore.sampling import steps

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


# ----------------------------------------------------------------------------- classifier-free guidance


def two_class_network(gm_classes: list[GaussianMixture], gm_all: GaussianMixture, sched, prediction: str):
    """Exact network of class y (0 or 1) and, for y = 2 (the null label), of the whole mixture."""
    nets = [g.network(sched, prediction) for g in (*gm_classes, gm_all)]

    def fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([net(x, t) for net in nets])  # (3, B, D)
        return outs[y, torch.arange(x.shape[0])]

    return fn


GM = GaussianMixture(
    torch.tensor([0.4, 0.6]), torch.tensor([[-1.5, 0.5], [1.0, -1.0]]), torch.full((2, 2), 0.3)
)
CLASSES = [GaussianMixture.gaussian(GM.means[k], GM.variances[k]) for k in range(2)]


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity"])
@pytest.mark.parametrize("scale", [0.0, 3.0, 7.5])
def test_cfg_score_is_the_guided_combination_of_exact_scores(prediction, scale):
    """Ho & Salimans 2022, Eq. 6 in score form: (1 - w) grad log p_t(x) + w grad log p_t(x | y), here with the exact
    scores of a two-class mixture written from ``GaussianMixture.score``, whatever the network predicts.
    (Guiding in the (1 + w) convention, w_ours = w + 1 read as w, misses by |s_c - s_u|.)"""
    sched = schedules.get("vp-cosine")
    den = Denoiser(two_class_network(CLASSES, GM, sched, prediction), sched, prediction)
    y = torch.tensor([0, 1, 1, 0])
    cfg = ClassifierFreeGuidance(den, scale, uncond={"y": torch.full((1,), 2)})
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    for t in (0.3, 0.7):
        s_u = GM.score(x, sched, t)
        s_c = torch.stack([CLASSES[int(k)].score(x[i : i + 1], sched, t)[0] for i, k in enumerate(y)])
        torch.testing.assert_close(
            cfg.score(x, t, y=y), (1 - scale) * s_u + scale * s_c, rtol=1e-6, atol=1e-8
        )


def test_cfg_rescale_is_lin_et_al_eq_15_16_for_any_phi():
    """x0_rescaled = x0_cfg std(x0_c) / std(x0_cfg), x0 = phi x0_rescaled + (1 - phi) x0_cfg, per sample; eps
    follows so that alpha x0 + sigma eps is still x_t."""
    sched = schedules.get("vp-linear")
    den = Denoiser(two_class_network(CLASSES, GM, sched, "eps"), sched, "eps")
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1, 1])
    null = {"y": torch.full((5,), 2)}
    phi, w, t = 0.7, 4.0, 0.4
    x0_c, _ = den.x0_eps(x, t, y=y)
    x0_u, _ = den.x0_eps(x, t, **null)
    x0_cfg = x0_u + w * (x0_c - x0_u)
    x0 = phi * x0_cfg * x0_c.std(1, keepdim=True) / x0_cfg.std(1, keepdim=True) + (1 - phi) * x0_cfg
    got_x0, got_eps = ClassifierFreeGuidance(den, w, null, rescale=phi).x0_eps(x, t, y=y)
    torch.testing.assert_close(got_x0, x0, rtol=1e-10, atol=1e-12)
    a, s = float(sched.alpha(torch.tensor(t, dtype=F64))), float(sched.sigma(torch.tensor(t, dtype=F64)))
    torch.testing.assert_close(got_eps, (x - a * x0) / s, rtol=1e-9, atol=1e-10)
    # per-sample times take the same formula
    tt = torch.full((5,), t, dtype=F64)
    got_x0, got_eps = ClassifierFreeGuidance(den, w, null, rescale=phi).x0_eps(x, tt, y=y)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, (x - a * x0) / s, rtol=1e-9, atol=1e-10)


def test_cfg_rescale_of_small_predictions_and_at_the_path_edges():
    """The std ratio uses the true standard deviations also when they are far below 1; on EDM at sigma = 1
    (t = 1/80) eps still absorbs the change of x0; at t = 0 (sigma = 0) eps stays finite."""
    edm = schedules.get("edm")
    net = Calls()
    den = Denoiser(lambda x, t, y: 1e-3 * net(x, t, y), edm, "x0")
    x, y, null = 1e-3 * torch.randn(4, 6, dtype=F64), torch.ones(4), {"y": torch.zeros(1)}
    x0_c, x0_u = den.x0(x, 1 / 80, y=y), den.x0(x, 1 / 80, y=torch.zeros(4))
    x0_cfg = x0_u + 5.0 * (x0_c - x0_u)
    assert float(x0_cfg.std(1).max()) < 1e-2
    expected = 0.5 * x0_cfg * x0_c.std(1, keepdim=True) / x0_cfg.std(1, keepdim=True) + 0.5 * x0_cfg
    got_x0, got_eps = ClassifierFreeGuidance(den, 5.0, null, rescale=0.5).x0_eps(x, 1 / 80, y=y)
    torch.testing.assert_close(got_x0, expected, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(got_x0 + 1.0 * got_eps, x, rtol=1e-9, atol=1e-15)  # alpha = 1, sigma = 1
    x0_0, eps_0 = ClassifierFreeGuidance(den, 5.0, null, rescale=0.5).x0_eps(x, 0.0, y=y)
    assert bool(torch.isfinite(eps_0).all() and torch.isfinite(x0_0).all())


class Calls:
    """eps = 0.5 x + y / 10, counting calls and the batch sizes it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x, t, y, flag=None):
        self.batches.append(x.shape[0])
        return 0.5 * x + y.to(x.dtype)[:, None] / 10


def test_cfg_guides_inside_its_interval_bounds_included_and_not_outside():
    """Kynkaenniemi et al. 2024: guidance only for t in [lo, hi]; outside, one plain forward of the conditional model."""
    net = Calls()
    den = Denoiser(net, "vp-cosine", "eps")
    cfg = ClassifierFreeGuidance(den, 3.0, {"y": torch.zeros(1)}, interval=(0.2, 0.6))
    x, y = torch.randn(2, 3, dtype=F64), torch.ones(2)
    eps_c, eps_u = 0.5 * x + 0.1, 0.5 * x
    for t, guided in ((0.1999, False), (0.2, True), (0.4, True), (0.6, True), (0.6001, False)):
        net.batches.clear()
        expected = eps_u + 3.0 * (eps_c - eps_u) if guided else eps_c
        torch.testing.assert_close(cfg.eps(x, t, y=y), expected)
        assert net.batches == ([4] if guided else [2])
    net.batches.clear()
    torch.testing.assert_close(
        cfg.eps(x, torch.full((2,), 0.9, dtype=F64), y=y), eps_u + 3.0 * (eps_c - eps_u)
    )
    assert net.batches == [4]  # per-sample times: guided everywhere


def test_cfg_conditions_missing_from_uncond_and_non_tensor_options_are_shared():
    seen = {}

    def fn(x, t, y, ctx, flag):
        seen.update(y=y, ctx=ctx, flag=flag)
        return x * 0 + y.to(x.dtype)[:, None]

    den = Denoiser(fn, "vp-cosine", "eps")
    cfg = ClassifierFreeGuidance(den, 2.0, {"y": torch.zeros(1)})
    x, ctx = torch.randn(3, 2, dtype=F64), torch.randn(3, 4)
    eps = cfg.eps(x, 0.5, y=torch.ones(3), ctx=ctx, flag=True)
    torch.testing.assert_close(eps, torch.full((3, 2), 2.0, dtype=F64))
    torch.testing.assert_close(seen["y"], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(seen["ctx"], torch.cat([ctx, ctx]))
    assert seen["flag"] is True
    with pytest.raises(ValueError, match="uncond"):
        ClassifierFreeGuidance(den, 2.0, {"z": torch.zeros(1)}).eps(
            x, 0.5, y=torch.ones(3), ctx=ctx, flag=True
        )


def test_cfg_bad_rescale_and_interval_are_refused():
    den = Denoiser(Calls(), "vp-cosine", "eps")
    for kw in (
        {"rescale": 1.01},
        {"rescale": -0.01},
        {"interval": (0.5, 0.4)},
        {"interval": (-0.1, 1.0)},
        {"interval": (0.0, 1.01)},
    ):
        with pytest.raises(ValueError):
            ClassifierFreeGuidance(den, 2.0, {"y": torch.zeros(1)}, **kw)
    ClassifierFreeGuidance(den, 2.0, {"y": torch.zeros(1)}, rescale=1.0, interval=(0.0, 1.0))
    ClassifierFreeGuidance(den, 2.0, {"y": torch.zeros(1)}, rescale=0.0, interval=(0.3, 0.3))


# ----------------------------------------------------------------------------- classifier guidance


def test_classifier_guidance_subtracts_scale_sigma_grad_from_eps():
    """Dhariwal & Nichol 2021, Algorithm 1 in eps form: eps_g = eps - s sigma grad log p(y | x_t); with
    log p = -k ||x - c||^2 / 2 the gradient is -k (x - c). x0 follows from x_t = alpha x0 + sigma eps."""
    sched = schedules.get("vp-linear")
    den = GM.denoiser(sched, "eps")
    c, k, scale = torch.tensor([0.5, -0.2], dtype=F64), 0.8, 2.5

    def log_prob(x, t):
        assert t.shape == (x.shape[0],)
        return -0.5 * k * ((x - c) ** 2).sum(1)

    guided = ClassifierGuidance(den, log_prob, scale)
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    for t in (0.3, torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=F64)):
        tt = torch.as_tensor(t, dtype=F64)
        a = sched.alpha(tt).reshape(-1, 1)
        s = sched.sigma(tt).reshape(-1, 1)
        eps = den.eps(x, t) + scale * s * k * (x - c)
        x0_g, eps_g = guided.x0_eps(x, t)
        torch.testing.assert_close(eps_g, eps, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x0_g, (x - s * eps) / a, rtol=1e-10, atol=1e-12)


def test_classifier_guidance_keeps_the_unguided_x0_where_alpha_is_zero_and_checks_its_classifier():
    den = GM.denoiser("rectified-flow", "velocity")
    guided = ClassifierGuidance(den, lambda x, t: -(x**2).sum(1), 1.0)
    x = torch.randn(3, 2, dtype=F64)
    torch.testing.assert_close(guided.x0(x, 1.0), den.x0(x, 1.0))
    with pytest.raises(ValueError, match="log_prob"):
        ClassifierGuidance(den, lambda x, t: x, 1.0).x0_eps(x, 0.5)
    with pytest.raises(TypeError, match="log_prob"):
        ClassifierGuidance(den, 3.0)


# ----------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize("rank, alpha", [(2, 8.0), (4, 4.0), (3, None)])
def test_lora_is_w_plus_alpha_over_r_times_b_a(rank, alpha):
    """Hu et al. 2021, Sec. 4.1: h = W x + (alpha / r) B A x (alpha = r when not given). (rsLoRA's
    alpha / sqrt(r) misses the update by a factor sqrt(r), 41% at r = 2.)"""
    pytest.importorskip("peft")
    from diffcore.nn.lora import add_lora, merge_lora

    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(6, 5))
    w, b = model.proj.weight.detach().clone(), model.proj.bias.detach().clone()
    add_lora(model, rank=rank, alpha=alpha)
    params = dict(model.named_parameters())
    lora_a, lora_b = params["proj.lora_A.default.weight"], params["proj.lora_B.default.weight"]
    assert lora_a.shape == (rank, 6) and lora_b.shape == (5, rank)
    with torch.no_grad():
        lora_b.copy_(torch.randn(5, rank))
    x = torch.randn(7, 6)
    scale = (alpha if alpha is not None else rank) / rank
    expected = x @ w.T + b + scale * x @ lora_a.detach().T @ lora_b.detach().T
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        merge_lora(model)
        base = model.proj.base_layer if hasattr(model.proj, "base_layer") else model.proj
        torch.testing.assert_close(base.weight, w + scale * lora_b @ lora_a, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- DDIM


def test_ddim_with_eta_zero_ignores_any_generator():
    """Song et al. 2021: eta = 0 is deterministic. The result is bitwise the same with no generator, with
    generators of different seeds and after the global RNG moved; with eta = 1 the generator matters."""
    den = GM.denoiser("vp-cosine", "eps")
    noise = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    runs = [diffcore.sample(den, noise, "ddim", 8, eta=0.0)]
    for seed in (0, 1, 12345):
        torch.randn(17)  # move the global RNG
        runs.append(
            diffcore.sample(den, noise, "ddim", 8, eta=0.0, generator=torch.Generator().manual_seed(seed))
        )
    for out in runs[1:]:
        assert torch.equal(out, runs[0])
    a = diffcore.sample(den, noise, "ddim", 8, eta=1.0, generator=torch.Generator().manual_seed(0))
    b = diffcore.sample(den, noise, "ddim", 8, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def test_ddim_step_is_song_et_al_eq_12_for_any_eta():
    """x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z with c = eta sigma_s sqrt(1 - r^2), r = alpha_t sigma_s /
    (alpha_s sigma_t), written out here; eta = 1 is the posterior of ``transitions.posterior`` (mean and spread).
    (sqrt(sigma_s^2 - c) instead of sqrt(sigma_s^2 - c^2) misses by ~0.1 at eta = 0.5.)"""
    sched = schedules.get("vp-linear")
    den = GM.denoiser(sched, "eps")
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    cur, nxt = steps.grid_points(sched, [0.6, 0.35])
    d = den.estimate(x, cur.t)
    a_t, s_t, a_s, s_s = (
        float(c) for t in (0.6, 0.35) for c in sched.coefficients(torch.tensor(t, dtype=F64))[:2]
    )
    r = a_t * s_s / (a_s * s_t)
    for eta in (0.0, 0.5, 1.0):
        c = eta * s_s * math.sqrt(1 - r * r)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
        expected = a_s * d.x0 + math.sqrt(s_s**2 - c**2) * d.eps + c * z
        got = steps.ddim_step(d, cur, nxt, eta, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    mean, var = transitions.posterior(sched, d.x0, x, 0.35, 0.6)
    torch.testing.assert_close(a_s * d.x0 + r * s_s * d.eps, mean, rtol=1e-10, atol=1e-12)
    assert steps.posterior_std(cur, nxt) ** 2 == pytest.approx(float(var), rel=1e-10)
    # landing on t = 0 returns the x0 estimate
    assert torch.equal(steps.ddim_step(d, cur, steps.grid_points(sched, [0.0])[0], 1.0), d.x0)


# ----------------------------------------------------------------------------- the other step pieces


def test_half_log_snr_and_grid_point_edges():
    assert steps.half_log_snr(0.6, 0.8) == pytest.approx(math.log(0.75), rel=1e-15)
    assert steps.half_log_snr(1.0, 0.0) == math.inf and steps.half_log_snr(0.0, 1.0) == -math.inf
    p = steps.GridPoint(0.3, 0.6, 0.8)
    assert p.lam == pytest.approx(math.log(0.75)) and not p.is_data
    assert steps.GridPoint(0.0, 1.0, 0.0).is_data and steps.GridPoint(0.0, 1.0, 0.0).lam == math.inf
    assert (
        steps.scaled_sigma(p) == pytest.approx(0.8 / 0.6)
        and steps.scaled_sigma(steps.GridPoint(1.0, 0.0, 1.0)) == math.inf
    )


def test_grid_points_are_the_schedule_at_the_grid_times():
    sched = schedules.get("vp-cosine")
    grid = torch.tensor([1.0, 0.7, 0.2, 0.0], dtype=F64)
    for p, t in zip(steps.grid_points(sched, grid), grid):
        a, s, da, ds = (float(c) for c in sched.coefficients(t))
        assert (p.t, p.alpha, p.sigma, p.d_alpha, p.d_sigma) == (float(t), a, s, da, ds)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "rectified-flow", "ve"])
def test_reverse_sde_coefficients_are_the_forward_sde_of_the_path(name):
    """f = d log alpha / dt and g^2 = d sigma^2 / dt - 2 f sigma^2 (Song et al. 2021, Eq. 5), written out; VP-linear:
    f = -beta / 2, g^2 = beta."""
    sched = schedules.get(name)
    for t in (0.1, 0.5, 0.9):
        a, s, da, ds = (float(c) for c in sched.coefficients(torch.tensor(t, dtype=F64)))
        f, g2 = steps.reverse_sde_coefficients(steps.GridPoint(t, a, s, da, ds))
        assert f == pytest.approx(da / a, rel=1e-12)
        assert g2 == pytest.approx(2 * s * ds - 2 * da / a * s * s, rel=1e-10)
        if name == "vp-linear":
            beta = 0.1 + 19.9 * t
            assert (f, g2) == (pytest.approx(-beta / 2, rel=1e-10), pytest.approx(beta, rel=1e-10))


def test_renoise_draws_the_forward_step():
    """renoise(x, lower, upper, z) = (alpha_u / alpha_l) x + scale sqrt(sigma_u^2 - (alpha_u / alpha_l)^2 sigma_l^2) z."""
    sched = schedules.get("vp-cosine")
    lower, upper = steps.grid_points(sched, [0.2, 0.5])
    x, z = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    mean, std = transitions.forward_step(sched, x, 0.2, 0.5)
    torch.testing.assert_close(steps.renoise(x, lower, upper, z), mean + std * z, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        steps.renoise(x, lower, upper, z, scale=1.5), mean + 1.5 * std * z, rtol=1e-10, atol=1e-12
    )


def test_step_length_is_the_difference_of_half_log_snrs():
    sched = schedules.get("vp-cosine")
    s, t = steps.grid_points(sched, [0.8, 0.3])
    assert steps.step_length(s, t) == pytest.approx(t.lam - s.lam, rel=1e-15) and steps.step_length(s, t) > 0
    edge = steps.grid_points(sched, [0.0])[0]
    assert steps.step_length(s, edge) == math.inf and steps.step_length(edge, t) == math.inf


def test_point_at_lambda_lands_on_that_half_log_snr():
    sched = schedules.get("vp-linear")
    for lam in (-3.0, 0.0, 2.5):
        assert steps.point_at_lambda(sched, lam).lam == pytest.approx(lam, abs=1e-6)
    with pytest.raises(ValueError, match="lam"):
        steps.point_at_lambda(sched, math.inf)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("h", [1e-3, 0.05, 0.19, 0.3, 1.5, 6.0])
def test_phi_is_the_exponential_integrator_weight(k, h):
    """I_k(h) = int_0^h exp(-(h - u)) u^k / k! du (Lu et al. 2022b), by quadrature (scipy), on both the series
    branch (small h) and the recursion."""
    from scipy.integrate import quad

    exact, _ = quad(lambda u: math.exp(-(h - u)) * u**k / math.factorial(k), 0.0, h, epsabs=0, epsrel=1e-13)
    assert steps.phi(k, h) == pytest.approx(exact, rel=1e-10, abs=1e-300)


def test_phi_edges():
    assert steps.phi(0, math.inf) == 1.0
    with pytest.raises(ValueError, match="diverges"):
        steps.phi(1, math.inf)
    with pytest.raises(ValueError, match="k"):
        steps.phi(-1, 0.5)


def test_randn_follows_the_generator_and_the_tensor():
    x = torch.zeros(3, 4, dtype=F64)
    z = steps.randn(x, torch.Generator().manual_seed(6))
    assert z.dtype == F64 and z.shape == (3, 4)
    assert torch.equal(z, torch.randn(3, 4, generator=torch.Generator().manual_seed(6), dtype=F64))


# ----------------------------------------------------------------------------- reflow


def _gaussian_rf_straightness(s: float, dim: int) -> float:
    """For data N(m, s^2 I) on the rectified-flow path the ODE trajectory from x(1) = z is x(t) = (1 - t) m +
    sd(t) z, sd(t) = sqrt((1 - t)^2 s^2 + t^2), so S = E|z|^2 int_0^1 (1 - s - sd'(t))^2 dt (Liu et al. 2023, Eq. 3),
    integrated here by the midpoint rule on 100000 cells."""
    n = 100_000
    t = (torch.arange(n, dtype=F64) + 0.5) / n
    sd = torch.sqrt((1 - t) ** 2 * s * s + t**2)
    dsd = (t - (1 - t) * s * s) / sd
    return dim * float(((1 - s - dsd) ** 2).mean())


def test_reflow_straightens_the_paths_of_gaussian_data():
    """Gaussian data N(m, s^2 I): the teacher's ODE couples z with x0 = m + s z (closed form); on these couplings
    the 2-rectified flow v(x, t) = (1 - s) z - m, z = (x - (1 - t) m) / ((1 - t) s + t), has straight paths:
    ``straightness`` is ~0 for it and the closed-form S for the teacher, the reflow loss
    (``CoupledFlowMatching``) is ~0 for it and not for the teacher, and one Euler step is exact."""
    from diffcore.distill import CoupledFlowMatching, generate_couplings, straightness

    m, s, dim = torch.tensor([1.0, -2.0], dtype=F64), 0.4, 2
    teacher = GaussianMixture.gaussian(m, torch.full((2,), s * s)).denoiser("rectified-flow", "velocity")
    z = torch.randn(2000, dim, generator=torch.Generator().manual_seed(7), dtype=F64)
    x0 = generate_couplings(teacher, z, "heun", 128)
    torch.testing.assert_close(x0, m + s * z, rtol=0, atol=5e-4)  # Heun's error, second order

    def rf2(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(F64)[:, None]
        return (1 - s) * (x - (1 - t) * m) / ((1 - t) * s + t) - m

    student = Denoiser(rf2, "rectified-flow", "velocity")
    before, after = straightness(teacher, z, 64), straightness(student, z, 64)
    closed = _gaussian_rf_straightness(s, dim)
    assert before.value == pytest.approx(closed, rel=0.1), (before, closed)
    assert after.value < 1e-6 * before.value and after.one_step_error < 1e-10
    assert before.one_step_error > 1e-3

    loss = CoupledFlowMatching(time_sampler="uniform")
    batch = {"x": x0, "noise": z}
    l_student, _ = loss(rf2, batch, generator=torch.Generator().manual_seed(8))
    l_teacher, _ = loss(
        lambda x, t: teacher.velocity(x, t.to(F64)), batch, generator=torch.Generator().manual_seed(8)
    )
    assert float(l_student) < 1e-6 * float(l_teacher)
    assert float(l_teacher) > 0.1  # measured 0.22: the teacher's velocity off its own (curved) paths
