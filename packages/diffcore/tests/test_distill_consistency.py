"""Consistency distillation on an analytic Gaussian mixture
with the exact teacher, trained through the diffcore Trainer: the students' 1-2 step samples are much closer
to the target (sliced Wasserstein) than the teacher's Euler at the same steps and than the untrained student."""

from __future__ import annotations

import copy

import pytest
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyDistillation,
    ConsistencyParameterization,
    MLPDenoiser,
    MLPDenoiserConfig,
)
from diffcore.training import Trainer

pytestmark = pytest.mark.slow  # trains small networks through the Trainer (tens of seconds each)

SCHEDULE = "rectified-flow"


def test_consistency_distillation_beats_the_teacher_at_one_step(tmp_path, few_step):
    torch.manual_seed(0)
    data, ref, noise = few_step.reference_sets()
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyDistillation(param, teacher=teacher, num_points=12, solver="ddim")
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = few_step.distance(
        param.denoiser(copy.deepcopy(net)), "consistency", 1, noise, ref, t_start=obj.t_max
    )
    summary = Trainer(
        net,
        obj,
        few_step.loader(data),
        few_step.train_config(tmp_path / "cd", 200),
        callbacks=[ConsistencyCallback(obj)],
    ).fit()
    student = param.denoiser(MLPDenoiser.from_pretrained(summary.model_dir).eval())
    for steps in (1, 2):
        got = few_step.distance(student, "consistency", steps, noise, ref, t_start=obj.t_max)
        teacher_same = few_step.distance(teacher, "euler", steps, noise, ref)
        assert got < 0.5 * untrained, (steps, got, untrained)
        if steps == 1:  # one step: far better than the teacher's single Euler step (which gives the mean)
            assert got < 0.6 * teacher_same, (steps, got, teacher_same)
