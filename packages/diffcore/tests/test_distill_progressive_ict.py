"""Progressive distillation and improved consistency training on an analytic Gaussian mixture, trained
through the diffcore Trainer: the 1-step students are far closer to the target than the teacher's single
Euler step and than the untrained student."""

from __future__ import annotations

import copy

import diffcore
import pytest
import torch
from diffcore.analytic import GaussianMixture, sliced_wasserstein
from diffcore.denoiser import Denoiser
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    ConsistencyTraining,
    MLPDenoiser,
    MLPDenoiserConfig,
    distill_progressively,
)
from diffcore.train import TrainConfig, Trainer
from torch.utils.data import DataLoader, TensorDataset

pytestmark = pytest.mark.slow  # trains small networks through the Trainer (tens of seconds each)

SCHEDULE = "rectified-flow"
GMM = GaussianMixture(
    torch.full((4,), 0.25),
    torch.tensor([[1.5, 1.5], [-1.5, 1.5], [1.5, -1.5], [-1.5, -1.5]]),
    torch.full((4, 2), 0.05),
)


def _config(tmp_path, name, steps):
    return TrainConfig(
        steps=steps, lr=3e-3, ema_decay=None, checkpoint_every=None, tensorboard=False, progress_bar=False,
        output_dir=str(tmp_path / name), log_every=steps, max_grad_norm=1.0,
    )  # fmt: skip


def _stack(items):
    return torch.stack([i[0] for i in items])


def _setup():
    torch.manual_seed(0)
    data = GMM.sample(4096, torch.Generator().manual_seed(1)).float()
    loader = DataLoader(TensorDataset(data), batch_size=128, shuffle=True, drop_last=True, collate_fn=_stack)
    ref = GMM.sample(1500, torch.Generator().manual_seed(2))
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(3))
    return loader, ref, noise


def _swd(den, sampler, steps, noise, ref, t_start=1.0):
    with torch.no_grad():
        x = diffcore.sample(
            den, noise, sampler, steps, t_start=t_start, generator=torch.Generator().manual_seed(5)
        )
    return sliced_wasserstein(x.double(), ref, projections=64)


def test_progressive_distillation_halves_steps_and_one_step_student_beats_teacher(tmp_path):
    loader, ref, noise = _setup()
    teacher = GMM.denoiser(SCHEDULE, "velocity")
    student = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = _swd(Denoiser(copy.deepcopy(student), SCHEDULE, "velocity"), "ddim", 1, noise, ref)
    rounds = distill_progressively(
        student,
        teacher,
        loader,
        _config(tmp_path, "pd", 250),
        teacher_steps=8,
        rounds=3,
        prediction="velocity",
    )
    assert [r.student_steps for r in rounds] == [4, 2, 1]
    final = Denoiser(MLPDenoiser.from_pretrained(rounds[-1].model_dir).eval(), SCHEDULE, "velocity")
    got = _swd(final, "ddim", 1, noise, ref)
    assert got < 0.6 * _swd(teacher, "euler", 1, noise, ref), got
    assert got < untrained, (got, untrained)  # untrained: x0 = noise, already a spread-out guess


def test_improved_consistency_training_from_data_alone(tmp_path):
    loader, ref, noise = _setup()
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyTraining(param, total_steps=300, s0=10, s1=160)
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = _swd(param.denoiser(copy.deepcopy(net)), "consistency", 1, noise, ref, obj.t_max)
    trainer = Trainer(net, obj, loader, _config(tmp_path, "ict", 300), callbacks=[ConsistencyCallback(obj)])
    trainer.fit()
    assert obj.step == 300 and obj.num_points == 161  # the curriculum reached its last stage
    got = _swd(param.denoiser(net.eval()), "consistency", 1, noise, ref, obj.t_max)
    assert got < 0.5 * untrained, (got, untrained)
    teacher = GMM.denoiser(SCHEDULE, "velocity")
    assert got < 0.6 * _swd(teacher, "euler", 1, noise, ref), got
