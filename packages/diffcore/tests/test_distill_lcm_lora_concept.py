"""LCM-LoRA applied to a LoRA-fine-tuned model keeps the fine-tuned concept at 4 steps (Luo et al. 2023,
"LCM-LoRA", Sec. 3: the acceleration adapter combines with a style adapter without training together).

Base: a flow-matching MLP of the four-mode mixture. Concept: a LoRA fine-tuned on the top-right component
alone, so "the sample lies in the quadrant x > 0, y > 0" is the concept, read exactly off the coordinates
(the base puts about a quarter of its samples there). The LCM-LoRA is trained on the BASE only; both adapters
are then active together and sampled with 4 ``lcm`` steps."""

from __future__ import annotations

import copy

import diffcore
import pytest
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    LatentConsistencyDistillation,
    MLPDenoiser,
    MLPDenoiserConfig,
    add_lcm_lora,
)
from diffcore.nn.lora import add_lora, find_lora_targets, lora_parameters, set_adapters
from diffcore.paths.denoiser import Denoiser
from diffcore.training import Trainer, objectives

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_thread"),
]  # trains three small networks through the Trainer; tiny nets: one thread

SCHEDULE = "rectified-flow"


def _concept_rate(x: torch.Tensor) -> float:
    """Fraction of samples in the top-right quadrant (the concept component sits at (1.5, 1.5))."""
    return float(((x[:, 0] > 0) & (x[:, 1] > 0)).double().mean())


def _sample(den, sampler, steps, noise, t_start=1.0):
    with torch.no_grad():
        return diffcore.sample(
            den, noise, sampler, steps, t_start=t_start, generator=torch.Generator().manual_seed(3)
        )


def test_lcm_lora_keeps_a_lora_fine_tuned_concept_at_four_steps(tmp_path, few_step):
    torch.manual_seed(0)
    data, _, noise = few_step.reference_sets(n_train=4096, n_eval=1000)
    base = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    fm = objectives.flow_matching()
    Trainer(base, fm, few_step.loader(data), few_step.train_config(tmp_path / "base", 500)).fit()
    base.eval().requires_grad_(False)
    base_den = Denoiser(base, SCHEDULE, "velocity")

    # The concept adapter: flow matching on the top-right component only.
    concept_data = data[(data[:, 0] > 0) & (data[:, 1] > 0)]
    targets = find_lora_targets(base)
    tuned = add_lora(copy.deepcopy(base), rank=8, target_modules=targets, adapter_name="concept")
    Trainer(tuned, fm, few_step.loader(concept_data), few_step.train_config(tmp_path / "concept", 150)).fit()

    # The LCM-LoRA, distilled from the base alone.
    accel = add_lcm_lora(copy.deepcopy(base), rank=16, target_modules=targets)
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = LatentConsistencyDistillation(
        param, teacher=base_den, guidance_range=(1.0, 1.0), guidance_key=None, num_points=25, skip=2
    )
    Trainer(
        accel,
        obj,
        few_step.loader(data),
        few_step.train_config(tmp_path / "lcm", 250),
        callbacks=[ConsistencyCallback(obj)],
    ).fit()

    # Both adapters on one network: the concept weights copied next to the LCM adapter.
    add_lora(accel, rank=8, target_modules=targets, adapter_name="concept")
    missing = accel.load_state_dict(
        {k: v for k, v in tuned.state_dict().items() if ".concept." in k}, strict=False
    )
    assert not missing.unexpected_keys
    assert len(lora_parameters(accel, "concept")) == len(lora_parameters(tuned, "concept"))
    set_adapters(accel, ["lcm", "concept"])
    accel.eval()

    base_rate = _concept_rate(_sample(base_den, "euler", 50, noise))
    tuned_rate = _concept_rate(_sample(Denoiser(tuned.eval(), SCHEDULE, "velocity"), "euler", 50, noise))
    both = _sample(param.denoiser(accel), "lcm", 4, noise, obj.t_max)
    both_rate = _concept_rate(both)
    set_adapters(accel, ["lcm"])
    lcm_only_rate = _concept_rate(_sample(param.denoiser(accel), "lcm", 4, noise, obj.t_max))

    assert 0.15 < base_rate < 0.35, base_rate  # the base draws every component
    assert 0.15 < lcm_only_rate < 0.35, lcm_only_rate  # so does the LCM-LoRA alone
    assert tuned_rate > 0.9, tuned_rate  # the fine-tuned model has the concept (50 Euler steps)
    assert both_rate > 0.8, (both_rate, tuned_rate)  # LCM-LoRA + concept LoRA keep it at 4 steps
    # and the 4-step samples sit near the concept component (modes are 3 apart), not at the origin
    inside = both[(both[:, 0] > 0) & (both[:, 1] > 0)]
    assert float((inside - few_step.gmm.means[0]).norm(dim=1).median()) < 1.5
