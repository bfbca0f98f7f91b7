"""Consistency distillation on an analytic Gaussian mixture
with the exact teacher, trained through the diffcore Trainer: the students' 1-2 step samples are much closer
to the target (sliced Wasserstein) than the teacher's Euler at the same steps and than the untrained student."""

from __future__ import annotations

import copy

import diffcore
import pytest
import torch
from diffcore.analytic import GaussianMixture, sliced_wasserstein
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyDistillation,
    ConsistencyParameterization,
    MLPDenoiser,
    MLPDenoiserConfig,
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
    if len(items[0]) == 1:
        return torch.stack([i[0] for i in items])
    return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}


def _loader(*tensors):
    return DataLoader(
        TensorDataset(*tensors), batch_size=128, shuffle=True, drop_last=True, collate_fn=_stack
    )


def _swd(den, sampler, steps, noise, ref, t_start=1.0, **kw):
    with torch.no_grad():
        x = diffcore.sample(
            den, noise, sampler, steps, t_start=t_start, generator=torch.Generator().manual_seed(5), **kw
        )
    return sliced_wasserstein(x.double(), ref, projections=64)


def _setup():
    torch.manual_seed(0)
    data = GMM.sample(4096, torch.Generator().manual_seed(1)).float()
    ref = GMM.sample(1500, torch.Generator().manual_seed(2))
    noise = torch.randn(1500, 2, generator=torch.Generator().manual_seed(3))
    return data, ref, noise


def test_consistency_distillation_beats_the_teacher_at_one_step(tmp_path):
    data, ref, noise = _setup()
    teacher = GMM.denoiser(SCHEDULE, "velocity")
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyDistillation(param, teacher=teacher, num_points=12, solver="ddim")
    net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
    untrained = _swd(param.denoiser(copy.deepcopy(net)), "consistency", 1, noise, ref, obj.t_max)
    summary = Trainer(
        net, obj, _loader(data), _config(tmp_path, "cd", 200), callbacks=[ConsistencyCallback(obj)]
    ).fit()
    student = param.denoiser(MLPDenoiser.from_pretrained(summary.model_dir).eval())
    for steps in (1, 2):
        got = _swd(student, "consistency", steps, noise, ref, obj.t_max)
        teacher_same = _swd(teacher, "euler", steps, noise, ref)
        assert got < 0.5 * untrained, (steps, got, untrained)
        if steps == 1:  # one step: far better than the teacher's single Euler step (which gives the mean)
            assert got < 0.6 * teacher_same, (steps, got, teacher_same)
