"""DDPO: the policy sampler against DDIM, its log-probabilities against the Gaussian density, the unbiasedness of
its gradient estimator on a one-step case with an analytic gradient, the clipped loss and the reward
normalisation against hand computations."""

from __future__ import annotations

import math

import diffcore
import pytest
import torch
from diffcore.alignment import (
    PerPromptNormalizer,
    gaussian_log_prob,
    ppo_loss,
    ppo_update,
    rollout,
    step_log_prob,
)
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.schedules import get as get_schedule
from diffcore.sampling.steps import grid_points, posterior_std
from torch import nn


class ConstantX0(nn.Module):
    """A network predicting ``x0 = theta`` whatever its input (the one-step toy policy)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.theta.expand_as(x)


def test_rollout_is_ddim_with_eta_from_the_same_generator():
    mix = GaussianMixture.random(dim=3, components=3, seed=1)
    den = mix.denoiser("vp-cosine", "eps")
    grid = torch.linspace(1.0, 0.05, 9, dtype=torch.float64)
    noise = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rolled = rollout(den, noise, grid, eta=0.7, generator=torch.Generator().manual_seed(5))
    expected = diffcore.sample(
        den, noise, "ddim", steps=8, grid=grid, eta=0.7, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(rolled.samples, expected)
    assert rolled.states.shape == (9, 6, 3) and rolled.log_probs.shape == (8, 6)


def test_recomputed_log_probs_equal_the_recorded_ones_and_the_gaussian_density():
    mix = GaussianMixture.random(dim=2, components=2, seed=3)
    den = mix.denoiser("rectified-flow", "velocity")
    grid = torch.linspace(1.0, 0.1, 5, dtype=torch.float64)
    noise = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rolled = rollout(den, noise, grid, eta=1.0, generator=torch.Generator().manual_seed(1))
    points = grid_points(den.schedule, grid)
    for i in range(rolled.num_steps):
        torch.testing.assert_close(step_log_prob(den, rolled, i), rolled.log_probs[i])
        # the transition's density from its own formula: N(mu, c^2) with mu from the exact denoiser
        cur, nxt = points[i], points[i + 1]
        c = posterior_std(cur, nxt)
        x0, eps = den.x0_eps(rolled.states[i], cur.t)
        mean = nxt.alpha * x0 + math.sqrt(nxt.sigma**2 - c**2) * eps
        normal = torch.distributions.Normal(mean, c)
        torch.testing.assert_close(rolled.log_probs[i], normal.log_prob(rolled.states[i + 1]).sum(1))
    index = torch.tensor([2, 0])
    torch.testing.assert_close(step_log_prob(den, rolled, 1, index), rolled.log_probs[1, index])


def test_gaussian_log_prob_sums_over_every_dimension():
    x, mean = torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64)
    expected = torch.distributions.Normal(mean, 0.3).log_prob(x).reshape(3, -1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, 0.3), expected)


def test_the_policy_refuses_a_deterministic_last_step():
    den = GaussianMixture.random(dim=1, components=1).denoiser("vp-cosine")
    noise = torch.randn(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="grid"):
        rollout(den, noise, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="eta"):
        rollout(den, noise, torch.tensor([1.0, 0.5], dtype=torch.float64), eta=0.0)


def test_score_function_gradient_is_unbiased_on_a_one_step_policy():
    """One DDIM step (eta = 1) from ``x_1 = noise`` to ``t = 0.5`` with ``x0_theta = theta`` (vp-cosine,
    ``alpha_1 = 0``): ``x_s = alpha_s theta + k x_1 + c z``. For ``r(x) = -||x - a||^2``,
    ``E[r] = -||alpha_s theta - a||^2 - D (k^2 + c^2)`` and ``grad E[r] = -2 alpha_s (alpha_s theta - a)``.
    The Monte-Carlo mean of DDPO's gradient (its loss at ratio 1) is ``-grad E[r]`` within its standard error."""
    dim, n = 2, 200_000
    net = ConstantX0(dim)
    with torch.no_grad():
        net.theta.copy_(torch.tensor([0.3, -0.5], dtype=torch.float64))
    den = diffcore.Denoiser(net, "vp-cosine", "x0")
    grid = torch.tensor([1.0, 0.5], dtype=torch.float64)
    a = torch.tensor([1.0, 0.7], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    rolled = rollout(den, torch.randn(n, dim, dtype=torch.float64, generator=g), grid, eta=1.0, generator=g)
    reward = -((rolled.samples - a) ** 2).sum(1)
    # per-sample gradients of log pi (linear in theta here, so one backward per coordinate of the sum is exact)
    log_prob = step_log_prob(den, rolled, 0)
    per_sample = torch.stack(
        [torch.autograd.grad(log_prob[i], net.theta, retain_graph=True)[0] for i in range(0, 20)]
    )  # a check of the closed form of the per-sample score below
    alpha_s = float(get_schedule("vp-cosine").alpha(torch.tensor(0.5, dtype=torch.float64)))
    cur, nxt = grid_points(den.schedule, grid)
    c = posterior_std(cur, nxt)
    k = math.sqrt(nxt.sigma**2 - c**2)
    mean = alpha_s * net.theta.detach() + k * rolled.states[0]
    score = alpha_s * (rolled.samples - mean) / c**2  # grad_theta log N(x_s; mu_theta, c^2)
    torch.testing.assert_close(per_sample, score[:20])

    loss, logs = ppo_loss(log_prob, rolled.log_probs[0], reward, clip_range=0.2, adv_clip=1e9)
    (grad,) = torch.autograd.grad(loss, net.theta)
    analytic = -2 * alpha_s * (alpha_s * net.theta.detach() - a)
    stderr = (reward[:, None] * score).std(0) / math.sqrt(n)
    assert float(logs["clip_fraction"]) == 0.0
    assert bool(((-grad - analytic).abs() < 4 * stderr).all()), (-grad, analytic, stderr)
    assert bool(((-grad - analytic).abs() < 0.05 * analytic.abs()).all())


def test_ppo_loss_clips_the_ratio_on_the_side_the_advantage_pushes():
    old = torch.zeros(4, dtype=torch.float64)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    loss, logs = ppo_loss(new, old, adv, clip_range=0.2)
    # max(-A r, -A clip(r)): [-1.2, 1.5, -0.5, 0.8] -> mean 0.15
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)
    loss.backward()
    # clipped terms have no gradient; unclipped ones -A r / 4
    torch.testing.assert_close(new.grad, torch.tensor([0.0, 1.5 / 4, -0.5 / 4, 0.0], dtype=torch.float64))
    assert logs["clip_fraction"].item() == 1.0
    loss_adv, _ = ppo_loss(torch.zeros(1), torch.zeros(1), torch.tensor([9.0]), adv_clip=5.0)
    assert loss_adv.item() == -5.0


def test_per_prompt_normalisation_uses_each_prompts_running_statistics():
    norm = PerPromptNormalizer(buffer_size=3, min_count=2)
    first = norm(["a", "b", "a"], torch.tensor([1.0, 5.0, 3.0]))
    # "a" has two rewards (1, 3): mean 2, std 1; "b" has one: the batch's mean 3, std sqrt(8/3)
    torch.testing.assert_close(first, torch.tensor([-1.0, 2.0 / math.sqrt(8 / 3), 1.0]), atol=1e-5, rtol=0)
    second = norm(["a", "a"], torch.tensor([5.0, 7.0]))
    # buffer of 3 keeps (5, 3 -> ...): after appending 5 and 7 it holds (3, 5, 7): mean 5, std sqrt(8/3)
    torch.testing.assert_close(second, torch.tensor([0.0, 2.0]) / math.sqrt(8 / 3), atol=1e-5, rtol=0)
    assert norm.counts() == {"a": 3, "b": 1}


def test_ppo_updates_raise_the_reward_of_a_mixture_policy():
    """A learnable-weight mixture policy rewarded for ``x > 0``: a few DDPO updates raise the right mode's mass."""

    class Mixture(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logit = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            w = torch.stack([torch.sigmoid(-self.logit), torch.sigmoid(self.logit)])
            mix = GaussianMixture(w, torch.tensor([[-2.0], [2.0]]), torch.full((2, 1), 0.09))
            return mix.x0_eps(x, get_schedule("vp-cosine"), t.double())[1]

    net = Mixture()
    den = diffcore.Denoiser(net, "vp-cosine", "eps")
    opt = torch.optim.Adam(net.parameters(), lr=0.2)
    grid = torch.linspace(1.0, 0.05, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    norm = PerPromptNormalizer(buffer_size=None, min_count=1)
    for _ in range(6):
        rolled = rollout(den, torch.randn(128, 1, dtype=torch.float64, generator=g), grid, generator=g)
        adv = norm(["any"] * 128, (rolled.samples[:, 0] > 0).double())
        logs = ppo_update(den, rolled, adv, opt, batch_size=64, clip_range=0.2, generator=g)
    assert set(logs) >= {"loss", "approx_kl", "clip_fraction"}
    assert float(torch.sigmoid(net.logit.detach())) > 0.7
