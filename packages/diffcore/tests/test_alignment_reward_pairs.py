"""Preference pairs on disk, Bradley-Terry reward models and reward-weighted fine-tuning, against hand
computations and a known true reward."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.alignment import (
    BradleyTerryObjective,
    PreferencePairs,
    RewardModel,
    RewardWeightedObjective,
    bradley_terry_loss,
    pair_accuracy,
    reward_weights,
)
from diffcore.training.objectives import DiffusionObjective
from torch import nn


def make_pairs(n: int, seed: int) -> PreferencePairs:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 2, 3, generator=g), torch.randn(n, 2, 3, generator=g)
    score_a, score_b = a.sum((1, 2)), b.sum((1, 2))
    labels = torch.arange(n) % 4
    prompts = [f"prompt {i % 4}" for i in range(n)]
    return PreferencePairs.from_scores(a, b, score_a, score_b, {"y": labels}, prompts, {"labeller": "sum"})


def test_pairs_round_trip_through_safetensors_and_json(tmp_path):
    pairs = make_pairs(10, 0)
    pairs.save(tmp_path / "pairs")
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == ["pairs.json", "pairs.safetensors"]
    back = PreferencePairs.load(tmp_path / "pairs")
    torch.testing.assert_close(back.winner, pairs.winner)
    torch.testing.assert_close(back.loser, pairs.loser)
    torch.testing.assert_close(back.cond["y"], pairs.cond["y"])
    assert back.prompts == pairs.prompts and back.metadata == {"labeller": "sum"}


def test_from_scores_puts_the_higher_score_first_and_drops_ties():
    a = torch.tensor([[1.0], [2.0], [3.0]])
    b = torch.tensor([[5.0], [0.0], [7.0]])
    pairs = PreferencePairs.from_scores(
        a, b, torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]), prompts=["p", "q", "r"]
    )
    torch.testing.assert_close(pairs.winner, torch.tensor([[1.0], [7.0]]))
    torch.testing.assert_close(pairs.loser, torch.tensor([[5.0], [3.0]]))
    assert pairs.prompts == ("p", "r")


def test_pair_batches_hold_winner_loser_condition_and_prompts():
    pairs = make_pairs(9, 1)
    batch = next(iter(pairs.loader(4, shuffle=False)))
    assert set(batch) == {"winner", "loser", "y", "prompt"}
    assert batch["winner"].shape == (4, 2, 3) and batch["prompt"] == list(pairs.prompts[:4])
    train, held = pairs.split(0.3, generator=torch.Generator().manual_seed(0))
    assert len(train) + len(held) == len(pairs) and len(held) == round(0.3 * len(pairs))


def test_pairs_refuse_mismatched_inputs_naming_them(tmp_path):
    with pytest.raises(ValueError, match="loser"):
        PreferencePairs(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="cond"):
        PreferencePairs(torch.zeros(3, 2), torch.zeros(3, 2), {"y": torch.zeros(2)})
    with pytest.raises(ValueError, match="score_a"):
        PreferencePairs.from_scores(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2))
    with pytest.raises(FileNotFoundError, match=r"pairs\.json"):
        PreferencePairs.load(tmp_path)


def test_bradley_terry_loss_equals_the_hand_value():
    loss, logs = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2)
    assert logs["accuracy"].item() == 0.5


def test_reward_model_recovers_a_linear_true_reward_from_bradley_terry_pairs():
    """Pairs labelled by Bradley-Terry with ``r(x) = 3 <u, x>``: a linear head on identity features recovers
    ``3 u`` (the maximum-likelihood estimate) and ranks held-out pairs like the true reward."""
    g = torch.Generator().manual_seed(0)
    u = torch.tensor([0.6, -0.8])
    n = 4000
    a, b = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    a_wins = (torch.rand(n, generator=g) < torch.sigmoid(3 * (a - b) @ u))[:, None]
    pairs = PreferencePairs(torch.where(a_wins, a, b), torch.where(a_wins, b, a))
    reward = RewardModel(nn.Identity(), feature_dim=2, hidden=())
    opt = torch.optim.LBFGS(reward.parameters(), lr=1, max_iter=40, line_search_fn="strong_wolfe")
    objective = BradleyTerryObjective()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss, _ = objective(reward, {"winner": pairs.winner, "loser": pairs.loser})
        loss.backward()
        return loss

    opt.step(closure)
    weight = reward.head[0].weight.detach().reshape(-1)
    torch.testing.assert_close(weight, 3 * u, atol=0.25, rtol=0)
    c, d = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    truth = PreferencePairs.from_scores(c, d, c @ u, d @ u)
    assert pair_accuracy(reward, truth) > 0.97


def test_frozen_features_do_not_train_and_trained_ones_do():
    features = nn.Linear(3, 4)
    before = features.weight.detach().clone()
    reward = RewardModel(features, 4, hidden=(8,))
    loss, _ = BradleyTerryObjective()(reward, {"winner": torch.randn(5, 3), "loser": torch.randn(5, 3)})
    loss.backward()
    assert features.weight.grad is None and reward.head[0].weight.grad is not None
    torch.testing.assert_close(features.weight, before)
    trained = RewardModel(nn.Linear(3, 4), 4, train_features=True)
    loss, _ = BradleyTerryObjective()(trained, {"winner": torch.randn(5, 3), "loser": torch.randn(5, 3)})
    loss.backward()
    assert trained.features.weight.grad is not None


def test_reward_weights_are_the_normalised_exponentials():
    r = torch.tensor([0.0, 1.0, 2.0])
    expected = torch.exp(r / 0.5) / torch.exp(r / 0.5).sum()
    torch.testing.assert_close(reward_weights(r, 0.5), expected)
    with pytest.raises(ValueError, match="temperature"):
        reward_weights(r, 0.0)


def test_reward_weighted_loss_is_the_weighted_sum_of_per_sample_losses():
    objective = DiffusionObjective("vp-cosine", prediction="v")
    net = nn.Linear(3, 3).double()
    model = lambda x, t: net(x) * t[:, None]  # noqa: E731
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = torch.linspace(-1, 1, 6, dtype=torch.float64)
    loss, logs = RewardWeightedObjective(objective, temperature=0.3)(
        model, {"x": x, "reward": r}, generator=torch.Generator().manual_seed(2)
    )
    g = torch.Generator().manual_seed(2)
    t = objective.time_sampler(6, generator=g)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    per_sample, _ = objective.per_sample_loss(model, x, noise, t, {})
    torch.testing.assert_close(loss, (reward_weights(r, 0.3) * per_sample).sum())
    assert 1.0 < logs["effective_samples"].item() < 6.0
    # a very high temperature is the plain objective (equal weights) on the same draws
    flat, _ = RewardWeightedObjective(objective, temperature=1e9)(
        model, {"x": x, "reward": r}, generator=torch.Generator().manual_seed(2)
    )
    plain, _ = objective(model, x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(flat, plain)
