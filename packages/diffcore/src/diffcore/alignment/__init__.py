"""Alignment of any ``Denoiser``-based model to preferences and rewards, and safety at sampling time.

- :mod:`~diffcore.alignment.pairs`: the preference-pair format (winner, loser, condition) and its loader;
- :mod:`~diffcore.alignment.reward`: Bradley-Terry reward models on the features of any backbone;
- :mod:`~diffcore.alignment.dpo`: Diffusion-DPO (Wallace et al. 2023) and its supervised baseline;
- :mod:`~diffcore.alignment.ddpo`: DDPO (Black et al. 2023): the stochastic sampler as a policy with per-step
  log-probabilities, the clipped importance-ratio loss and per-prompt reward normalisation;
- :mod:`~diffcore.alignment.reward_weighted`: reward-weighted fine-tuning (Lee et al. 2023);
- :mod:`~diffcore.alignment.safety`: safety guidance away from a named concept (Schramowski et al. 2023).

Objectives follow the Trainer contract ``objective(model, batch, generator) -> (loss, logs)``; every model is
any ``net(x_t, t, **cond)`` on any schedule and prediction (through ``DiffusionObjective``).
"""

from diffcore.alignment.ddpo import (
    PerPromptNormalizer,
    Rollout,
    gaussian_log_prob,
    policy_step,
    ppo_loss,
    ppo_update,
    rollout,
    step_log_prob,
)
from diffcore.alignment.dpo import DiffusionDPO, SupervisedOnWinners, diffusion_dpo_loss, split_pair_batch
from diffcore.alignment.pairs import PAIRS_FORMAT, PreferencePairs, collate_pairs
from diffcore.alignment.reward import BradleyTerryObjective, RewardModel, bradley_terry_loss, pair_accuracy
from diffcore.alignment.reward_weighted import RewardWeightedObjective, reward_weights
from diffcore.alignment.safety import SafetyGuidance

__all__ = [
    "PAIRS_FORMAT",
    "BradleyTerryObjective",
    "DiffusionDPO",
    "PerPromptNormalizer",
    "PreferencePairs",
    "RewardModel",
    "RewardWeightedObjective",
    "Rollout",
    "SafetyGuidance",
    "SupervisedOnWinners",
    "bradley_terry_loss",
    "collate_pairs",
    "diffusion_dpo_loss",
    "gaussian_log_prob",
    "pair_accuracy",
    "policy_step",
    "ppo_loss",
    "ppo_update",
    "reward_weights",
    "rollout",
    "split_pair_batch",
    "step_log_prob",
]
