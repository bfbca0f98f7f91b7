"""diffcore.distill without training: boundary conditions, discretisations, teacher steps, progressive
targets, consistency/LCM samplers on exact consistency functions, straightness, DMD's fixed point."""

from __future__ import annotations

import math

import diffcore
import pytest
import torch
from diffcore.distill import (
    ConsistencyParameterization,
    ConsistencyTraining,
    DistributionMatchingDistillation,
    DMDModel,
    MLPDenoiser,
    MLPDenoiserConfig,
    consistency_distance,
    guided,
    ict_num_points,
    karras_sigmas,
    lognormal_interval_probs,
    ode_step,
    straightness,
    time_of_data_sigma,
    two_step_target,
)
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.schedules import get as get_schedule
from torch import nn

SCHEDULES = ["rectified-flow", "vp-cosine", "vp-linear"]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_boundary_condition_identity_at_t_min_and_x0_at_pure_noise(schedule):
    param = ConsistencyParameterization(schedule, "eps", t_min=0.002)
    c_skip, c_out = param.scalings(torch.tensor([0.002, 0.3, 1.0], dtype=torch.float64))
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0)
    assert 0 < c_skip[1] < 1 and 0 < c_out[1] < 1
    sched = get_schedule(schedule)
    if float(sched.alpha(torch.tensor(1.0, dtype=torch.float64))) == 0.0:
        assert c_skip[2] == 0.0 and c_out[2] == 1.0
    net = MLPDenoiser(MLPDenoiserConfig(width=16, depth=1))
    x = torch.randn(5, 2)
    f = param(net, x, torch.full((5,), 0.002))
    alpha = float(sched.alpha(torch.tensor(0.002, dtype=torch.float64)))
    torch.testing.assert_close(f, x / alpha)  # f(x, t_min) = x / alpha (identity in data units), any network
    t = torch.full((5,), 0.3)
    c_skip_mid, c_out_mid = (float(c[1]) for c in (c_skip, c_out))
    x0_net = param(lambda x_, t_: torch.zeros_like(x_), x, t)  # eps-net = 0: x0 estimate = x / alpha
    alpha_mid = float(sched.alpha(torch.tensor(0.3, dtype=torch.float64)))
    torch.testing.assert_close(x0_net, (c_skip_mid + c_out_mid) * x / alpha_mid)


def test_discretisation_curriculum_and_lognormal_proposal():
    s = karras_sigmas(11, 0.002, 80.0)
    assert s[0] == pytest.approx(0.002) and s[-1] == pytest.approx(80.0) and bool((s[1:] > s[:-1]).all())
    counts = [ict_num_points(k, 1000) for k in range(0, 1001, 50)]
    assert counts[0] == 11 and counts[-1] == 1281 and counts == sorted(counts)
    assert set(counts) <= {11, 21, 41, 81, 161, 321, 641, 1281}
    p = lognormal_interval_probs(karras_sigmas(41))
    assert p.sum() == pytest.approx(1.0) and bool((p >= 0).all())
    mids = torch.log(karras_sigmas(41))[:-1]
    assert abs(float((p * mids).sum()) - (-1.1)) < 1.0  # centred near P_mean
    for name in SCHEDULES:
        sched = get_schedule(name)
        t = time_of_data_sigma(sched, s)
        ratio = sched.sigma(t) / sched.alpha(t)
        torch.testing.assert_close(ratio, s, rtol=1e-6, atol=0)


def test_ict_defaults_are_the_improved_recipe():
    obj = ConsistencyTraining(ConsistencyParameterization("rectified-flow"), total_steps=600)
    assert obj.distance == "pseudo-huber" and obj.weighting == "ict" and obj.target.decay == 0.0
    a, b = torch.zeros(3, 4), torch.ones(3, 4)
    c = 0.00054 * 2.0
    torch.testing.assert_close(
        consistency_distance(a, b, "pseudo-huber"), torch.full((3,), math.sqrt(4 + c * c) - c)
    )
    obj.step = 600
    assert obj.num_points == 1281


@pytest.mark.parametrize("bad", [dict(t_min=0.0), dict(sigma_data=-1.0), dict(prediction="noise")])
def test_parameterization_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ConsistencyParameterization("rectified-flow", **bad)


def _gaussian(mu=(1.0, -0.5), var=(0.3, 0.1)):
    return GaussianMixture.gaussian(torch.tensor(mu), torch.tensor(var))


def test_heun_teacher_step_beats_euler_against_fine_solution():
    gmm = GaussianMixture.random(2, components=3, seed=1)
    den = gmm.denoiser("rectified-flow", "velocity")
    x = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t, s = torch.full((256,), 0.6, dtype=torch.float64), torch.full((256,), 0.55, dtype=torch.float64)
    fn = lambda x_, t_: den.x0_eps(x_, t_)  # noqa: E731
    ref = x
    for k in range(200):
        a, b = 0.6 - 0.05 * k / 200, 0.6 - 0.05 * (k + 1) / 200
        ref = ode_step(fn, den.schedule, ref, torch.full_like(t, a), torch.full_like(t, b), "heun")
    err = {m: float((ode_step(fn, den.schedule, x, t, s, m) - ref).norm()) for m in ("euler", "heun")}
    assert err["heun"] < 0.2 * err["euler"]


@pytest.mark.parametrize("schedule", ["vp-cosine", "rectified-flow"])
def test_progressive_target_is_the_one_step_equivalent_of_two_teacher_steps(schedule):
    gmm = GaussianMixture.random(2, components=3, seed=2)
    teacher = gmm.denoiser(schedule, "eps" if schedule != "rectified-flow" else "velocity")
    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.full((64,), 0.75, dtype=torch.float64)
    x_tilde = two_step_target(teacher, z, t, 0.5, {})
    fn = lambda x_, t_: teacher.x0_eps(x_, t_)  # noqa: E731
    two = ode_step(
        fn, teacher.schedule, ode_step(fn, teacher.schedule, z, t, t - 0.25, "ddim"), t - 0.25, t - 0.5
    )
    one = ode_step(
        lambda x_, t_: _x0_eps_from(x_tilde, x_, t_, teacher.schedule), teacher.schedule, z, t, t - 0.5
    )
    torch.testing.assert_close(one, two)
    point = GaussianMixture.gaussian(torch.tensor([0.7, -1.2]), torch.full((2,), 1e-8)).denoiser(
        schedule, "x0"
    )
    torch.testing.assert_close(
        two_step_target(point, z, t, 0.5, {}),
        torch.tensor([0.7, -1.2], dtype=torch.float64).expand(64, 2),
        atol=1e-5,
        rtol=0,
    )


def _x0_eps_from(x0, x, t, schedule):
    from diffcore.distill.teacher import coefficients

    c = coefficients(schedule, t, x)
    return x0, (x - c.alpha * x0) / c.sigma


def _exact_gaussian_consistency(mu, var, schedule):
    """The exact consistency function of N(mu, diag var): the ODE map is affine per dimension."""
    sched = get_schedule(schedule)

    def fn(x, t, **cond):
        a, s = sched.alpha(t.double())[:, None], sched.sigma(t.double())[:, None]
        std_t = torch.sqrt(a**2 * var + s**2)
        return (mu + var.sqrt() * (x.double() - a * mu) / std_t).to(x.dtype)

    return _den(fn, sched)


def _den(fn, sched):
    from diffcore.paths.denoiser import Denoiser

    return Denoiser(fn, sched, "x0")


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("sampler", ["consistency", "lcm"])
def test_consistency_sampling_with_the_exact_consistency_function_hits_the_moments(steps, sampler):
    mu, var = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.3, 0.1], dtype=torch.float64)
    den = _exact_gaussian_consistency(mu, var, "vp-cosine")
    noise = torch.randn(20000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = diffcore.sample(den, noise, sampler, steps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(x.var(0), var, atol=0.02, rtol=0)


def test_lcm_sampler_feeds_the_guidance_scale():
    seen = []

    def fn(x, t, w=None):
        seen.append(w)
        return torch.zeros_like(x)

    den = _den(fn, get_schedule("rectified-flow"))
    diffcore.sample(den, torch.randn(3, 2), "lcm", 2, guidance_scale=5.5)
    assert len(seen) == 2 and all(torch.equal(w, torch.full((3,), 5.5)) for w in seen)
    with pytest.raises(ValueError, match="guidance_scale"):
        diffcore.sample(den, torch.randn(3, 2), "lcm", 2, guidance_scale=-1.0)


def test_guided_teacher_interpolates_between_branches():
    class Cond:
        schedule = get_schedule("rectified-flow")

        def x0_eps(self, x, t, y):
            return x * 0 + y[:, None].to(x.dtype), x * 0 - y[:, None].to(x.dtype)

    x, t = torch.zeros(4, 2), torch.full((4,), 0.5)
    y, null = torch.tensor([2, 2, 2, 2]), {"y": torch.zeros(4, dtype=torch.long)}
    for w, expected in ((1.0, 2.0), (0.0, 0.0), (3.0, 6.0)):
        x0, eps = guided(Cond(), {"y": y}, null, torch.full((4,), w))(x, t)
        torch.testing.assert_close(x0, torch.full((4, 2), expected))
        torch.testing.assert_close(eps, torch.full((4, 2), -expected))


def test_straightness_is_zero_for_a_point_mass_and_positive_for_a_mixture():
    noise = torch.randn(512, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    point = GaussianMixture.gaussian(torch.tensor([1.0, 2.0]), torch.full((2,), 1e-10)).denoiser(
        "rectified-flow", "velocity"
    )
    s0 = straightness(point, noise, steps=16)
    assert s0.value < 1e-8 and s0.one_step_error < 1e-10
    mix = GaussianMixture.random(2, components=4, seed=0).denoiser("rectified-flow", "velocity")
    s1 = straightness(mix, noise, steps=16)
    assert s1.value > 0.05 and s1.relative > 0.01 and s1.one_step_error > 0.05


class _Exact(nn.Module):
    def __init__(self, gmm, schedule):
        super().__init__()
        self.fn = gmm.network(schedule, "x0")
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self.fn(x, t) + 0 * self.dummy


def test_dmd_gradient_vanishes_when_the_fake_score_is_the_real_one():
    gmm = GaussianMixture.random(2, components=3, seed=4)
    teacher = gmm.denoiser("rectified-flow", "x0")
    gen = MLPDenoiser(MLPDenoiserConfig(width=16, depth=1))
    obj = DistributionMatchingDistillation(teacher, regression_weight=0.0)
    x = torch.randn(64, 2, requires_grad=True)
    loss, size = obj._matching_loss(
        DMDModel(gen, _Exact(gmm, "rectified-flow")), x, {}, torch.Generator().manual_seed(0)
    )
    (grad,) = torch.autograd.grad(loss, x)
    assert float(grad.abs().max()) < 1e-5 and float(size) < 1e-5
    loss2, _ = obj._matching_loss(
        DMDModel(gen, _Exact(GaussianMixture.random(2, 3, seed=9), "rectified-flow")), x, {}, None
    )
    (grad2,) = torch.autograd.grad(loss2, x)
    assert float(grad2.abs().mean()) > 1e-2


def test_mlp_student_round_trips_through_save_pretrained(tmp_path):
    net = MLPDenoiser(MLPDenoiserConfig(width=16, depth=2, num_classes=3, guidance_embedding=True))
    net.save_pretrained(tmp_path / "m")
    back = MLPDenoiser.from_pretrained(tmp_path / "m")
    x, t, y, w = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 3]), torch.rand(4) * 8
    torch.testing.assert_close(back(x, t, y=y, w=w), net(x, t, y=y, w=w))
    with pytest.raises(ValueError, match="w"):
        net(x, t, y=y)


def test_lcm_timestep_scaling_gives_lcms_boundary_scalings_and_the_networks_own_estimate():
    t_min = 0.002
    param = ConsistencyParameterization("rectified-flow", "velocity", t_min=t_min, timestep_scaling=10.0)
    t = torch.tensor([t_min, 0.0025, 0.01, 0.3, 0.9], dtype=torch.float64)
    c_skip, c_out = param.scalings(t)
    scaled = 10.0 * 1000.0 * (t - t_min)  # LCM: timestep_scaling x the 1000-step index
    torch.testing.assert_close(c_skip, 0.25 / (scaled**2 + 0.25))
    torch.testing.assert_close(c_out, scaled / (scaled**2 + 0.25).sqrt())
    net = MLPDenoiser(MLPDenoiserConfig(width=16, depth=1))
    x = torch.randn(6, 2)
    torch.testing.assert_close(param(net, x, torch.full((6,), t_min)), x / (1 - t_min))  # boundary: identity
    tt = torch.full((6,), 0.3)
    with torch.no_grad():
        x0_net = x - tt[:, None] * net(x, tt)  # the velocity network's own data estimate
        torch.testing.assert_close(param(net, x, tt), x0_net, atol=1e-5, rtol=0)
    cm = ConsistencyParameterization("rectified-flow", "velocity", t_min=t_min)  # CM's: skip still large
    assert float(cm.scalings(torch.tensor([0.3], dtype=torch.float64))[0]) > 0.5
    with pytest.raises(ValueError, match="timestep_scaling"):
        ConsistencyParameterization("rectified-flow", timestep_scaling=0.0)


def test_lcm_samples_on_evenly_spaced_points_of_its_discretisation_with_an_ema_target():
    from diffcore.distill import LatentConsistencyDistillation

    param = ConsistencyParameterization("rectified-flow", "x0")
    obj = LatentConsistencyDistillation(param, teacher=param.denoiser(lambda x, t: x), num_points=25)
    times = time_of_data_sigma(param.schedule, karras_sigmas(25, param._s_min, 80.0))
    times[0] = param.t_min
    for steps, index in ((1, [24]), (2, [24, 12]), (4, [24, 18, 12, 6])):
        grid = obj.sampling_grid(steps)
        torch.testing.assert_close(grid[:-1], times[index])
        assert float(grid[-1]) == 0.0 and float(grid[0]) == pytest.approx(obj.t_max)
    with pytest.raises(ValueError, match="steps"):
        obj.sampling_grid(25)
    assert obj.target.decay == 0.95  # LCM's EMA target (Luo et al. 2023, Algorithm 1)
    net = MLPDenoiser(MLPDenoiserConfig(width=8, depth=1))
    assert obj.target.module(net) is not net
