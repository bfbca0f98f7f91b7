"""EM distillation and DMD2's parts against analytic answers on the Gaussian mixture.

- EMD's E-step (Xie et al. 2024, Sec. 3.2): with the identity generator ``g(z) = z`` the generator's noised
  density is ``N(0, alpha^2 + sigma^2)`` and its exact denoiser is the fake score; the Langevin chain on
  ``(eps, z)`` must then leave ``x_t = alpha g(z) + sigma eps`` distributed as the MIXTURE noised to ``t``
  (its target marginal), which the starting draws are far from.
- With one E-step the noise-cancelled M-step displacement is DMD's ``(mu_teacher - mu_fake) / mean|x - mu_teacher|``
  (Sec. 3.4).
- DMD2: the generator is updated on one step in ``generator_every`` (no gradient reaches it otherwise);
  backward simulation starts at ``sigma(1) z``, visits the student grid's times equally often per sample and
  re-noises with the schedule's alpha / sigma; a per-time fake score gets each sample's time index; the
  generator's GAN loss leaves the fake network's weights without gradient."""

from __future__ import annotations

import pytest
import torch
from diffcore.distill import (
    DistributionMatchingDistillation,
    DMDModel,
    EMDistillation,
    EStep,
    MLPDenoiser,
    MLPDenoiserConfig,
    dmd_optimizer,
    student_times,
)
from diffcore.distill.teacher import coefficients
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.sampling import grids
from torch import nn

SCHEDULE = "rectified-flow"


class _Fn(nn.Module):
    """A fixed network ``fn(x, t)`` as a module (no parameters of its own but one dummy)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, **_):
        return self.fn(x, t) + 0 * self.dummy


def _identity_pair(few_step):
    """Identity generator (x0 output = its input at t = 1, where x_1 = z) and the exact fake score N(0, I)."""
    gen = _Fn(lambda x, t: x)
    prior = GaussianMixture.gaussian(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    fake = _Fn(prior.network(SCHEDULE, "x0"))
    return DMDModel(gen, fake)


def test_emd_e_step_samples_the_teacher_marginal(few_step):
    gmm = few_step.gmm
    model = _identity_pair(few_step)
    obj = EMDistillation(gmm.denoiser(SCHEDULE, "velocity"), gamma_eps=0.05, gamma_z=0.05)
    n, t_val = 3000, 0.4
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.full((n,), t_val, dtype=torch.float64)
    c = coefficients(obj.schedule, t, z)
    truth = c.alpha * gmm.sample(n, torch.Generator().manual_seed(1)) + c.sigma * torch.randn(
        n, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    start = sliced_wasserstein(c.alpha * z + c.sigma * eps, truth)
    state = obj.e_step(model, z, eps, t, {}, steps=400, generator=g)
    assert isinstance(state, EStep)
    end = sliced_wasserstein(c.alpha * state.z + c.sigma * state.eps, truth)
    floor = sliced_wasserstein(
        truth,
        c.alpha * gmm.sample(n, torch.Generator().manual_seed(3))
        + c.sigma * torch.randn(n, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64),
    )
    assert start > 5 * floor and end < 1.5 * floor, (start, end, floor)  # measured: 0.30, 0.035, 0.040


def test_emd_one_step_m_step_is_dmd_direction(few_step):
    gmm = few_step.gmm
    teacher = gmm.denoiser(SCHEDULE, "velocity")
    torch.manual_seed(0)
    fake = MLPDenoiser(MLPDenoiserConfig(width=16, depth=2)).double()
    model = DMDModel(_Fn(lambda x, t: 0.5 * x), fake)
    obj = EMDistillation(teacher, langevin_steps=1, gamma_eps=0.3)
    g = torch.Generator().manual_seed(0)
    z, eps = (
        torch.randn(64, 2, generator=g, dtype=torch.float64),
        torch.randn(64, 2, generator=g, dtype=torch.float64),
    )
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.9 + 0.05
    state = obj.e_step(model, z, eps, t, {}, generator=g)
    x = obj.generate(model.generator, state.z)
    move = obj.m_step_move(model, x, eps, state, t, {})
    c = coefficients(obj.schedule, t, x)
    x_t = c.alpha * x + c.sigma * eps
    with torch.no_grad():
        real, mu_fake = teacher.x0(x_t, t), fake(x_t, t)
    norm = (x - real).abs().mean(1, keepdim=True)
    torch.testing.assert_close(move, (real - mu_fake) / norm)
    # without noise cancellation the whole residual (drift + noise) is used
    loud = EMDistillation(teacher, langevin_steps=1, gamma_eps=0.3, noise_cancellation=False)
    assert float((loud.m_step_move(model, x, eps, state, t, {}) - move).abs().mean()) > 0.1


def _dmd_model():
    torch.manual_seed(0)
    return DMDModel(
        MLPDenoiser(MLPDenoiserConfig(width=16, depth=2)),
        MLPDenoiser(MLPDenoiserConfig(width=16, depth=2)),
        16,
    )


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"x": torch.randn(32, 2, generator=g), "noise": torch.randn(32, 2, generator=g)}


def test_dmd2_two_time_scale_updates_the_generator_one_step_in_n(few_step):
    model = _dmd_model()
    obj = DistributionMatchingDistillation(few_step.gmm.denoiser(SCHEDULE, "velocity"), generator_every=3)
    updated = []
    for _ in range(6):
        model.zero_grad(set_to_none=True)
        loss, _ = obj(model, _batch())
        loss.backward()
        updated.append(any(p.grad is not None for p in model.generator.parameters()))
        assert all(p.grad is not None for p in model.fake_score.parameters())
    assert updated == [True, False, False, True, False, False]


def test_dmd2_backward_simulation_visits_the_sampler_grid(few_step):
    """Per sample: every grid time about equally often, ``x_1 = sigma(1) z``, and a state at ``t < 1`` is the
    chain's re-noising ``alpha(t) x0 + sigma(t) n`` of the previous step's output (here a constant ``x0 = c``,
    so the state has mean ``alpha(t) c`` and standard deviation ``sigma(t)``)."""
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    obj = DistributionMatchingDistillation(teacher, student_steps=(1, 2, 4))
    torch.testing.assert_close(obj.student_grid(4), grids.make("uniform", obj.schedule, 4).to(torch.float64))
    c = torch.tensor([3.0, -2.0])
    const = _Fn(lambda x, t: c.expand_as(x).clone())  # x0 prediction: always c
    obj = DistributionMatchingDistillation(teacher, student_steps=(1, 2, 4), student_grid_name="halving")
    torch.testing.assert_close(
        obj.student_grid(4), torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0], dtype=torch.float64)
    )
    z = torch.randn(40000, 2, generator=torch.Generator().manual_seed(0))
    x, t = obj.simulate(const, z, torch.Generator().manual_seed(1))
    for time in (1.0, 0.5, 0.25, 0.125):
        at = t == time
        assert abs(float(at.float().mean()) - 0.25) < 0.02, (time, float(at.float().mean()))
        if time == 1.0:
            torch.testing.assert_close(
                x[at], z[at]
            )  # x_1 = sigma(1) z, sigma(1) = 1 on the rectified-flow path
        else:  # rectified flow: alpha = 1 - t, sigma = t
            torch.testing.assert_close(x[at].mean(0), (1 - time) * c, atol=0.03, rtol=0)
            torch.testing.assert_close(x[at].std(0), torch.full((2,), time), atol=0.02, rtol=0)
    assert set(t.tolist()) == {1.0, 0.5, 0.25, 0.125}
    with pytest.raises(ValueError, match="no-such-grid"):
        DistributionMatchingDistillation(teacher, student_steps=(1, 2), student_grid_name="no-such-grid")


def test_halving_grid_is_nested():
    g4 = grids.make("halving", None, 4)
    torch.testing.assert_close(g4, torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0], dtype=torch.float64))
    g2 = grids.make("halving", None, 2)
    torch.testing.assert_close(g4[:2], g2[:2])
    torch.testing.assert_close(
        grids.make("halving", None, 3, t_start=0.9, t_end=0.1),
        torch.tensor([0.9, 0.5, 0.3, 0.1], dtype=torch.float64),
    )


def test_dmd2_per_time_fake_score_gets_the_time_index(few_step):
    """With ``student_time_key`` the fake network is called with the index of each sample's sampling time in
    ``student_times`` (1, 0.5, 0.25, 0.125 -> 0, 1, 2, 3), in its own loss and in the matching gradient."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Fake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y):
            seen.append(y)
            return x * self.w

    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    obj = DistributionMatchingDistillation(
        teacher, student_steps=(1, 2, 4), student_grid_name="halving", student_time_key="y"
    )
    assert student_times(obj.schedule, (1, 2, 4), "halving") == [1.0, 0.5, 0.25, 0.125]
    gen = MLPDenoiser(MLPDenoiserConfig(width=16, depth=2))
    model = DMDModel(gen, Fake())
    times: list[torch.Tensor] = []
    simulate = obj.simulate
    obj.simulate = lambda *a, **k: (lambda r: (times.append(r[1]), r)[1])(simulate(*a, **k))  # type: ignore[method-assign]
    obj(model, _batch(), torch.Generator().manual_seed(0))
    expected = {1.0: 0, 0.5: 1, 0.25: 2, 0.125: 3}
    want = torch.tensor([expected[v] for v in times[0].tolist()])
    assert len(seen) == 2  # fake loss and matching gradient
    for y in seen:
        assert torch.equal(y, want)
    assert len(set(want.tolist())) > 1


def test_dmd2_gan_generator_loss_leaves_the_fake_network_alone(few_step):
    model = _dmd_model()
    obj = DistributionMatchingDistillation(
        few_step.gmm.denoiser(SCHEDULE, "velocity"), gan_weight=1.0, gan_feature_module="mlp.3"
    )
    x = obj.generate(model.generator, torch.randn(32, 2))
    d_loss, g_loss = obj._gan_losses(model, x, _batch()["x"], {}, None)
    g_loss.backward()
    assert all(p.grad is None for p in model.fake_score.parameters()) and model.gan_head.weight.grad is None
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.generator.parameters())
    d_loss.backward()
    assert model.gan_head.weight.grad is not None
    with pytest.raises(ValueError, match="gan_feature_module"):
        DistributionMatchingDistillation(few_step.gmm.denoiser(SCHEDULE, "velocity"), gan_weight=1.0)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_dmd2_backward_simulation_is_not_worse_with_more_steps(tmp_path, few_step):
    """DMD2 with backward simulation for 1 / 2 / 4 steps on the halving grid with a per-time fake score,
    generator and fake score from a trained flow network,
    three training seeds: the mean sliced W2 does not increase from 1 to 2 to 4 steps beyond two combined
    standard errors, and 1-step sampling is far closer than the flow network's own single Euler step."""
    import copy
    import math

    from diffcore.distill import couplings_loader, generate_couplings
    from diffcore.paths.denoiser import Denoiser
    from diffcore.training import Trainer, objectives

    data, ref, noise = few_step.reference_sets()
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    z = torch.randn(4096, 2, generator=torch.Generator().manual_seed(1))
    pairs = generate_couplings(teacher, z.double(), "heun", 16).float()
    torch.manual_seed(0)
    base = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    Trainer(
        base, objectives.flow_matching(), few_step.loader(data), few_step.train_config(tmp_path / "b", 1000)
    ).fit()
    base_one = few_step.distance(Denoiser(base.eval(), SCHEDULE, "velocity"), "euler", 1, noise, ref)
    got: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for seed in range(3):
        torch.manual_seed(seed)
        obj = DistributionMatchingDistillation(
            teacher, "velocity", "velocity", student_steps=(1, 2, 4), student_grid_name="halving",
            student_time_key="y",
        )  # fmt: skip
        fake = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2, num_classes=4))
        fake.load_state_dict(base.state_dict(), strict=False)
        torch.nn.init.zeros_(fake.label_embed.weight)  # starts as the flow network at every sampling time
        model = DMDModel(copy.deepcopy(base).train(), fake.train())
        config = few_step.train_config(tmp_path / str(seed), 800, lr=1e-3)
        config.seed = seed  # the objective's draws and data order differ per seed (the start is shared)
        Trainer(
            model, obj, couplings_loader(pairs, z, 128), config, optimizer=dmd_optimizer(model, 1e-3)
        ).fit()
        den = obj.generator_denoiser(model.generator.eval())
        for k in got:
            got[k].append(few_step.distance(den, "consistency", k, noise, ref, grid="halving"))
    stats = {
        k: (float(torch.tensor(v).mean()), float(torch.tensor(v).std()) / math.sqrt(3))
        for k, v in got.items()
    }
    assert stats[1][0] < 0.4 * base_one, (stats, base_one)
    for a, b in ((1, 2), (2, 4)):
        (ma, sa), (mb, sb) = stats[a], stats[b]
        assert mb <= ma + 2 * math.hypot(sa, sb), stats
