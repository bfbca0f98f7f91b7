"""Diffusion-DPO against hand-computed values, its invariants, and its optimum on a Gaussian mixture.

The model family is the exact denoiser of a two-component 1-D mixture whose weight is the one parameter, so the
DPO target ``p_ref exp(r / beta_eff) / Z`` is again a member of the family and its weight is known in closed
form; the likelihood weighting makes the denoising errors an (unbiased, noisy) estimate of the log-likelihood
ratio (module docstring of ``diffcore.alignment.dpo``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from diffcore.alignment import DiffusionDPO, SupervisedOnWinners, diffusion_dpo_loss
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.predictions import PathCoefficients, from_x0_eps
from diffcore.paths.schedules import get as get_schedule
from diffcore.training.objectives import DiffusionObjective
from torch import nn

MEANS = torch.tensor([[-2.0], [2.0]], dtype=torch.float64)
VARIANCES = torch.full((2, 1), 0.3**2, dtype=torch.float64)


class MixtureNet(nn.Module):
    """The exact network (of kind ``prediction``) of ``w0 N(-2, 0.09) + w1 N(2, 0.09)``, ``w1 = sigmoid(logit)``."""

    def __init__(self, w1: float, schedule: str = "vp-cosine", prediction: str = "eps") -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(w1 / (1 - w1)), dtype=torch.float64))
        self.schedule, self.prediction = get_schedule(schedule), prediction

    @property
    def w1(self) -> float:
        return float(torch.sigmoid(self.logit.detach()))

    def mixture(self) -> GaussianMixture:
        w = torch.stack([torch.sigmoid(-self.logit), torch.sigmoid(self.logit)])
        return GaussianMixture(w, MEANS, VARIANCES)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.double()
        x0, eps = self.mixture().x0_eps(x, self.schedule, t)
        return from_x0_eps(x0, eps, self.prediction, PathCoefficients.at(self.schedule, t, 2))


def preference_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pairs of ``p_ref = 0.5 N(-2) + 0.5 N(2)`` labelled by Bradley-Terry with ``r(x) = 1[x > 0]``."""
    g = torch.Generator().manual_seed(seed)
    ref = GaussianMixture(torch.tensor([0.5, 0.5]), MEANS, VARIANCES)
    a, b = ref.sample(n, g), ref.sample(n, g)
    reward = lambda x: (x[:, 0] > 0).double()  # noqa: E731
    a_wins = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(reward(a) - reward(b)))[:, None]
    return torch.where(a_wins, a, b), torch.where(a_wins, b, a)


def fit_weight(dpo: DiffusionDPO, model: MixtureNet, winner: torch.Tensor, loser: torch.Tensor) -> float:
    """Minimise the DPO loss over the model's one parameter on fixed pairs and fixed ``(t, eps)`` draws."""
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=30, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss, _ = dpo(model, {"winner": winner, "loser": loser}, generator=torch.Generator().manual_seed(1))
        loss.backward()
        return loss

    opt.step(closure)
    return model.w1


def test_dpo_loss_equals_the_hand_computed_value_and_not_the_mean_inside_the_log_sigmoid():
    err_w, err_l = torch.tensor([0.1, 0.5]), torch.tensor([0.3, 0.2])
    ref_w, ref_l = torch.tensor([0.2, 0.4]), torch.tensor([0.25, 0.3])
    loss, logs = diffusion_dpo_loss(err_w, err_l, ref_w, ref_l, beta=10.0)
    # pair 1: -5 * ((0.1 - 0.2) - (0.3 - 0.25)) = 0.75; pair 2: -5 * ((0.5 - 0.4) - (0.2 - 0.3)) = -1.0
    expected = (math.log1p(math.exp(-0.75)) + math.log1p(math.exp(1.0))) / 2  # 0.850337
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert float(logs["implicit_accuracy"]) == 0.5
    assert float(logs["reward_margin"]) == pytest.approx((0.75 - 1.0) / 2, abs=1e-6)
    # the trap: batch means inside one log-sigmoid, -5 * ((0.3 - 0.3) - (0.25 - 0.275)) = -0.125
    trap = -F.logsigmoid(-5.0 * ((err_w.mean() - ref_w.mean()) - (err_l.mean() - ref_l.mean())))
    assert float(trap) == pytest.approx(math.log1p(math.exp(0.125)), abs=1e-6)
    assert abs(float(loss) - float(trap)) > 0.09


def test_dpo_loss_weights_each_pair_by_its_own_ordering():
    """The gradient of a pair's winner error is ``beta/2 sigmoid(-margin_i) / B``: pairs ranked wrong pull harder."""
    err_w = torch.tensor([0.1, 0.5], requires_grad=True)
    loss, _ = diffusion_dpo_loss(
        err_w, torch.tensor([0.3, 0.2]), torch.tensor([0.2, 0.4]), torch.tensor([0.25, 0.3]), 10.0
    )
    loss.backward()
    expected = torch.tensor(
        [5 * torch.sigmoid(torch.tensor(-0.75)) / 2, 5 * torch.sigmoid(torch.tensor(1.0)) / 2]
    )
    torch.testing.assert_close(err_w.grad, expected)


def test_dpo_refuses_bad_shapes_and_beta():
    with pytest.raises(ValueError, match="err_w"):
        diffusion_dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="beta"):
        DiffusionDPO(DiffusionObjective("vp-cosine"), MixtureNet(0.5), beta=0.0)
    with pytest.raises(ValueError, match="draws"):
        DiffusionDPO(DiffusionObjective("vp-cosine"), MixtureNet(0.5), draws=0)


@pytest.mark.parametrize(
    ("schedule", "prediction"),
    [("vp-cosine", "eps"), ("vp-cosine", "x0"), ("vp-cosine", "v"), ("rectified-flow", "velocity")],
)
def test_winner_equal_loser_or_model_equal_reference_gives_log_two(schedule, prediction):
    """The winner and its loser share ``t`` and the noise: identical samples give a zero margin exactly, and so
    does a model equal to its reference, for every parameterisation."""
    objective = DiffusionObjective(schedule, prediction=prediction)
    x = torch.randn(16, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    same, _ = DiffusionDPO(objective, MixtureNet(0.5, schedule, prediction), beta=50.0)(
        MixtureNet(0.8, schedule, prediction), {"winner": x, "loser": x}
    )
    assert same.item() == pytest.approx(math.log(2), abs=1e-12)
    winner, loser = preference_pairs(16, 1)
    ref = MixtureNet(0.5, schedule, prediction)
    equal, _ = DiffusionDPO(objective, ref, beta=50.0, draws=3)(
        MixtureNet(0.5, schedule, prediction), {"winner": winner, "loser": loser}
    )
    assert equal.item() == pytest.approx(math.log(2), abs=1e-12)


@pytest.mark.parametrize(
    ("schedule", "prediction"),
    [("vp-cosine", "eps"), ("vp-cosine", "x0"), ("vp-cosine", "v"), ("rectified-flow", "velocity")],
)
def test_dpo_gradient_raises_the_weight_of_the_preferred_component(schedule, prediction):
    winner, loser = preference_pairs(1024, 2)
    dpo = DiffusionDPO(
        DiffusionObjective(schedule, prediction=prediction),
        MixtureNet(0.5, schedule, prediction),
        beta=2.0,
        draws=4,
    )
    model = MixtureNet(0.5, schedule, prediction)
    loss, _ = dpo(model, {"winner": winner, "loser": loser}, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert float(model.logit.grad) < 0  # descending the loss raises w1, the component the reward prefers


def test_likelihood_weighted_errors_estimate_the_log_likelihood_ratio():
    """``E_{t, eps}[w(t) (err_theta - err_ref)] = -log p_theta(x) / p_ref(x)`` for exact denoisers (1-D data,
    ``w = -1/2 d lambda/dt``): the identity behind the ``beta/2`` convention of the docstring."""
    objective = DiffusionObjective("vp-cosine", weighting="likelihood")
    model, ref = MixtureNet(0.8), MixtureNet(0.5)
    x = torch.tensor([[-2.3], [-1.8], [1.9], [2.4]], dtype=torch.float64)
    k = 20_000
    g = torch.Generator().manual_seed(0)
    xs = x.repeat(k, 1)
    t = objective.time_sampler(len(xs), generator=g).double()
    noise = torch.randn(xs.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        diff = (
            objective.per_sample_loss(model, xs, noise, t, {})[0]
            - objective.per_sample_loss(ref, xs, noise, t, {})[0]
        )
    diff = diff.reshape(k, len(x))
    estimate, stderr = diff.mean(0), diff.std(0) / math.sqrt(k)
    exact = -(model.mixture().log_prob(x) - ref.mixture().log_prob(x)).detach()
    assert bool(((estimate - exact).abs() < 4 * stderr + 1e-3).all()), (estimate, exact, stderr)


def test_dpo_moves_the_mixture_weight_to_the_closed_form_optimum():
    """Reward ``1[x > 0]`` on ``p_ref = 0.5 N(-2) + 0.5 N(2)``: the DPO optimum ``p_ref exp(r / beta_eff) / Z`` keeps
    the components and gives the right one weight ``e^(1/beta_eff) / (1 + e^(1/beta_eff))`` with
    ``beta_eff = beta / 2`` (likelihood weighting). Averaging the errors of 32 draws per pair reaches it; the
    single draw of Eq. 14 moves towards it and stops short (Jensen)."""
    beta = 2.0
    optimum = math.exp(2 / beta) / (1 + math.exp(2 / beta))  # 0.731
    winner, loser = preference_pairs(4096, 0)
    objective = DiffusionObjective("vp-cosine", weighting="likelihood")

    fitted = fit_weight(
        DiffusionDPO(objective, MixtureNet(0.5), beta=beta, draws=32), MixtureNet(0.5), winner, loser
    )
    assert fitted == pytest.approx(optimum, abs=0.03)
    assert (
        abs(fitted - math.exp(1 / beta) / (1 + math.exp(1 / beta))) > 0.06
    )  # not the optimum of beta_eff = beta
    one_draw = fit_weight(DiffusionDPO(objective, MixtureNet(0.5), beta=beta), MixtureNet(0.5), winner, loser)
    assert 0.53 < one_draw < fitted

    # the exact DPO (analytic log-likelihoods) on the same pairs: the optimum up to the pairs' sampling error
    exact_model = MixtureNet(0.5)
    with torch.no_grad():
        ref = MixtureNet(0.5).mixture()
    opt = torch.optim.LBFGS(exact_model.parameters(), lr=1, max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        mix = exact_model.mixture()
        ratio = lambda x: mix.log_prob(x) - ref.log_prob(x)  # noqa: E731
        loss = -F.logsigmoid(beta / 2 * (ratio(winner) - ratio(loser))).mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert exact_model.w1 == pytest.approx(optimum, abs=0.015)


def test_supervised_baseline_is_the_objective_on_the_winners():
    objective = DiffusionObjective("vp-cosine", prediction="v")
    winner, loser = preference_pairs(32, 3)
    model = MixtureNet(0.6, prediction="v")
    sft, _ = SupervisedOnWinners(objective)(
        model, {"winner": winner, "loser": loser}, generator=torch.Generator().manual_seed(4)
    )
    plain, _ = objective(model, winner, generator=torch.Generator().manual_seed(4))
    assert sft.item() == plain.item()
