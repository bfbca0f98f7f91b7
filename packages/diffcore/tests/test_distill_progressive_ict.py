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
from diffcore.distill.evaluation import (
    four_mode_mixture,
    reference_sets,
    sample_distance,
    small_train_config,
    tensor_loader,
)
from diffcore.paths.denoiser import Denoiser
from diffcore.training import Trainer

pytestmark = pytest.mark.slow  # trains small networks through the Trainer (tens of seconds each)

SCHEDULE = "rectified-flow"
GMM = four_mode_mixture()


def _setup():
    torch.manual_seed(0)
    data, ref, noise = reference_sets(GMM)
    return tensor_loader(data), ref, noise


def test_progressive_distillation_halves_steps_and_one_step_student_beats_teacher(tmp_path):
    loader, ref, noise = _setup()
    teacher = GMM.denoiser(SCHEDULE, "velocity")
    student = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = sample_distance(Denoiser(copy.deepcopy(student), SCHEDULE, "velocity"), "ddim", 1, noise, ref)
    rounds = distill_progressively(
        student,
        teacher,
        loader,
        small_train_config(tmp_path / "pd", 250),
        teacher_steps=8,
        rounds=3,
        prediction="velocity",
    )
    assert [r.student_steps for r in rounds] == [4, 2, 1]
    final = Denoiser(MLPDenoiser.from_pretrained(rounds[-1].model_dir).eval(), SCHEDULE, "velocity")
    got = sample_distance(final, "ddim", 1, noise, ref)
    assert got < 0.6 * sample_distance(teacher, "euler", 1, noise, ref), got
    assert got < untrained, (got, untrained)  # untrained: x0 = noise, already a spread-out guess


def test_improved_consistency_training_from_data_alone(tmp_path):
    loader, ref, noise = _setup()
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyTraining(param, total_steps=300, s0=10, s1=160)
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = sample_distance(
        param.denoiser(copy.deepcopy(net)), "consistency", 1, noise, ref, t_start=obj.t_max
    )
    trainer = Trainer(
        net, obj, loader, small_train_config(tmp_path / "ict", 300), callbacks=[ConsistencyCallback(obj)]
    )
    trainer.fit()
    assert obj.step == 300 and obj.num_points == 161  # the curriculum reached its last stage
    got = sample_distance(param.denoiser(net.eval()), "consistency", 1, noise, ref, t_start=obj.t_max)
    assert got < 0.5 * untrained, (got, untrained)
    teacher = GMM.denoiser(SCHEDULE, "velocity")
    assert got < 0.6 * sample_distance(teacher, "euler", 1, noise, ref), got
