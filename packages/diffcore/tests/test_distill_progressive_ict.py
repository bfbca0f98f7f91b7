"""Progressive distillation and improved consistency training on an analytic Gaussian mixture, trained
through the diffcore Trainer: the 1-step students are far closer to the target than the teacher's single
Euler step and than the untrained student."""

from __future__ import annotations

import copy

import pytest
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    ConsistencyTraining,
    MLPDenoiser,
    MLPDenoiserConfig,
    distill_progressively,
)
from diffcore.paths.denoiser import Denoiser
from diffcore.training import Trainer

pytestmark = pytest.mark.slow  # trains small networks through the Trainer (tens of seconds each)

SCHEDULE = "rectified-flow"


def _setup(few_step):
    torch.manual_seed(0)
    data, ref, noise = few_step.reference_sets()
    return few_step.loader(data), ref, noise


def test_progressive_distillation_halves_steps_and_one_step_student_beats_teacher(tmp_path, few_step):
    loader, ref, noise = _setup(few_step)
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    student = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = few_step.distance(
        Denoiser(copy.deepcopy(student), SCHEDULE, "velocity"), "ddim", 1, noise, ref
    )
    rounds = distill_progressively(
        student,
        teacher,
        loader,
        few_step.train_config(tmp_path / "pd", 250),
        teacher_steps=8,
        rounds=3,
        prediction="velocity",
    )
    assert [r.student_steps for r in rounds] == [4, 2, 1]
    final = Denoiser(MLPDenoiser.from_pretrained(rounds[-1].model_dir).eval(), SCHEDULE, "velocity")
    got = few_step.distance(final, "ddim", 1, noise, ref)
    assert got < 0.6 * few_step.distance(teacher, "euler", 1, noise, ref), got
    assert got < untrained, (got, untrained)  # untrained: x0 = noise, already a spread-out guess


def test_improved_consistency_training_from_data_alone(tmp_path, few_step):
    loader, ref, noise = _setup(few_step)
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyTraining(param, total_steps=300, s0=10, s1=160)
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = few_step.distance(
        param.denoiser(copy.deepcopy(net)), "consistency", 1, noise, ref, t_start=obj.t_max
    )
    trainer = Trainer(
        net, obj, loader, few_step.train_config(tmp_path / "ict", 300), callbacks=[ConsistencyCallback(obj)]
    )
    trainer.fit()
    assert obj.step == 300 and obj.num_points == 161  # the curriculum reached its last stage
    got = few_step.distance(param.denoiser(net.eval()), "consistency", 1, noise, ref, t_start=obj.t_max)
    assert got < 0.5 * untrained, (got, untrained)
    teacher = few_step.gmm.denoiser(SCHEDULE, "velocity")
    assert got < 0.6 * few_step.distance(teacher, "euler", 1, noise, ref), got
