"""Reflow (2-rectified flow) and distribution matching distillation on an analytic Gaussian mixture with the
exact teacher, trained through the diffcore Trainer: reflow straightens trajectories (straightness and the
one-step error both drop) and a DMD generator is far closer to the target in one step than the teacher."""

from __future__ import annotations

import copy

import pytest
import torch
from diffcore.distill import (
    CoupledFlowMatching,
    DistributionMatchingDistillation,
    DMDModel,
    MLPDenoiser,
    MLPDenoiserConfig,
    couplings_loader,
    dmd_optimizer,
    generate_couplings,
    straightness,
)
from diffcore.paths.denoiser import Denoiser
from diffcore.training import Trainer

pytestmark = pytest.mark.slow  # trains small networks through the Trainer (tens of seconds each)

SCHEDULE = "rectified-flow"


def _pairs(few_step):
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    z = torch.randn(4096, 2, generator=torch.Generator().manual_seed(1))
    x0 = generate_couplings(teacher, z.double(), "heun", 16).float()
    return teacher, z, x0


def test_reflow_straightens_trajectories_and_improves_one_step_sampling(tmp_path, few_step):
    torch.manual_seed(0)
    teacher, z, x0 = _pairs(few_step)
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    summary = Trainer(
        net,
        CoupledFlowMatching(),
        couplings_loader(x0, z, 128),
        few_step.train_config(tmp_path / "reflow", 250),
    ).fit()
    rf2 = Denoiser(MLPDenoiser.from_pretrained(summary.model_dir).eval(), SCHEDULE, "velocity")
    probe = torch.randn(500, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before, after = straightness(teacher, probe.double(), 16), straightness(rf2, probe, 16)
    assert after.value < 0.5 * before.value, (before, after)
    assert after.one_step_error < 0.5 * before.one_step_error, (before, after)
    ref = few_step.gmm.sample(1500, torch.Generator().manual_seed(3))
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(4))
    assert few_step.distance(rf2, "euler", 1, noise, ref) < 0.6 * few_step.distance(
        teacher, "euler", 1, noise, ref
    )


def test_dmd_one_step_generator_approaches_the_target(tmp_path, few_step):
    torch.manual_seed(0)
    teacher, z, x0 = _pairs(few_step)
    model = DMDModel(
        MLPDenoiser(MLPDenoiserConfig(width=64, depth=2)), MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    )
    obj = DistributionMatchingDistillation(teacher)
    ref = few_step.gmm.sample(1500, torch.Generator().manual_seed(3))
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(4))
    untrained = few_step.distance(
        obj.generator_denoiser(copy.deepcopy(model.generator).eval()), "consistency", 1, noise, ref
    )
    config = few_step.train_config(tmp_path / "dmd", 250, lr=2e-3)
    Trainer(model, obj, couplings_loader(x0, z, 128), config, optimizer=dmd_optimizer(model, 2e-3)).fit()
    model.generator.save_pretrained(tmp_path / "generator")
    gen = MLPDenoiser.from_pretrained(tmp_path / "generator").eval()
    got = few_step.distance(obj.generator_denoiser(gen), "consistency", 1, noise, ref)
    assert got < 0.5 * untrained, (got, untrained)
    assert got < 0.6 * few_step.distance(teacher, "euler", 1, noise, ref), got
