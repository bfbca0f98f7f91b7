"""Continuous-time consistency training (ECT, Geng et al. 2024) against its formulas, and that it learns the
four-mode mixture from data alone: the mapping ``s_r / s = 1 - n(s) / q^a`` (Eq. 9), the stage schedule, the
lognormal draw of ``s``, the loss ``(s - s_r)^-1 d(f(x_s), stopgrad f(x_r))`` (Eq. 8) reproduced by hand, the
diffusion-training limit at stage 0, and the pseudo-Huber constant ``c = 0.00054 sqrt(d)`` (iCT, Sec. 3.3)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    EasyConsistencyTraining,
    MLPDenoiser,
    MLPDenoiserConfig,
    consistency_distance,
    ect_gap_ratio,
    ect_stage,
    time_of_data_sigma,
)
from diffcore.distill.teacher import noised
from diffcore.training import Trainer

SCHEDULE = "rectified-flow"


def test_gap_ratio_is_ect_eq9_and_zero_at_stage_zero():
    s = torch.tensor([0.01, 0.3, 1.0, 5.0, 40.0], dtype=torch.float64)
    assert torch.equal(ect_gap_ratio(s, 0), torch.zeros_like(s))  # n >= 1: diffusion pretraining
    for a in (1, 3, 6):
        n = 1 + 8 / (1 + torch.exp(s))  # 1 + k sigmoid(-b s), k = 8, b = 1
        want = (1 - n / 2**a).clamp_min(0)
        torch.testing.assert_close(ect_gap_ratio(s, a), want)
    # large stages close the gap: r -> t
    assert float((1 - ect_gap_ratio(s, 12)).max()) < 9 / 2**12 + 1e-12
    with pytest.raises(ValueError, match="stage"):
        ect_gap_ratio(s, -1)


def test_stage_schedule_pretrains_then_advances_in_equal_parts():
    stages = [ect_stage(k, 100, 4, 0.2) for k in range(100)]
    assert stages[:20] == [0] * 20
    assert stages[20:40] == [1] * 20 and stages[40:60] == [2] * 20 and stages[80:] == [4] * 20
    assert ect_stage(500, 100, 4, 0.2) == 4  # held after the end


def _objective(**kw) -> EasyConsistencyTraining:
    return EasyConsistencyTraining(ConsistencyParameterization(SCHEDULE, "x0"), total_steps=100, **kw)


def test_draw_is_lognormal_and_follows_the_mapping():
    obj = _objective(stages=4, pretrain_fraction=0.0)
    obj.step = 99  # last stage
    s, s_r = obj.draw(200_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    log_s = s.log()
    inside = (s > obj.parameterization._s_min) & (s < obj.s_max)
    assert abs(float(log_s.median()) - (-1.1)) < 0.02  # the clipping leaves the median alone
    q16, q84 = torch.quantile(log_s[:100_000], torch.tensor([0.1587, 0.8413], dtype=torch.float64))
    assert abs(float(q84 - q16) / 2 - 2.0) < 0.03
    keep = inside & (s_r > 0)
    torch.testing.assert_close(s_r[keep] / s[keep], ect_gap_ratio(s[keep], 4))


def test_loss_is_ect_eq8_by_hand():
    torch.manual_seed(0)
    net = MLPDenoiser(MLPDenoiserConfig(width=16, depth=2, time_features=8)).double()
    x0 = torch.randn(64, 2, dtype=torch.float64)
    obj = _objective(stages=3, pretrain_fraction=0.0)
    obj.step = 50
    loss, _logs = obj(net, x0, torch.Generator().manual_seed(3))
    # the same draws, by hand
    g = torch.Generator().manual_seed(3)
    s, s_r = obj.draw(64, torch.device("cpu"), g)
    z = torch.randn(x0.shape, dtype=x0.dtype, generator=g)
    f = obj.parameterization
    t = time_of_data_sigma(f.schedule, s)
    pred = f(net, noised(f.schedule, x0, z, t), t)
    with torch.no_grad():
        t_r = time_of_data_sigma(f.schedule, torch.where(s_r > 0, s_r, s))
        target = f(net, noised(f.schedule, x0, z, t_r), t_r)
        target = torch.where((s_r > 0)[:, None], target, x0)
    want = ((pred - target) ** 2).mean(1) / (s - s_r)
    torch.testing.assert_close(loss, want.mean())
    # x_s and x_r share z, in data units x0 + s z
    torch.testing.assert_close(noised(f.schedule, x0, z, t) / (1 - t)[:, None], x0 + s[:, None] * z)


def test_stage_zero_is_denoising_regression_on_the_data():
    torch.manual_seed(0)
    net = MLPDenoiser(MLPDenoiserConfig(width=16, depth=2, time_features=8)).double()
    x0 = torch.randn(32, 2, dtype=torch.float64)
    obj = _objective(pretrain_fraction=0.5)
    obj.step = 10
    assert obj.stage == 0
    loss, logs = obj(net, x0, torch.Generator().manual_seed(1))
    assert float(logs["boundary_fraction"]) == 1.0
    g = torch.Generator().manual_seed(1)
    s, _ = obj.draw(32, torch.device("cpu"), g)
    z = torch.randn(x0.shape, dtype=x0.dtype, generator=g)
    f = obj.parameterization
    t = time_of_data_sigma(f.schedule, s)
    want = (((f(net, noised(f.schedule, x0, z, t), t) - x0) ** 2).mean(1) / s).mean()
    torch.testing.assert_close(loss, want)


def test_pseudo_huber_constant_is_ict_value():
    a, b = torch.zeros(3, 3, 8, 8), torch.full((3, 3, 8, 8), 0.01)
    c = 0.00054 * math.sqrt(3 * 64)
    want = math.sqrt(3 * 64 * 0.01**2 + c**2) - c
    torch.testing.assert_close(consistency_distance(a, b, "pseudo-huber"), torch.full((3,), want))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stages"):
        _objective(stages=0)
    with pytest.raises(ValueError, match="pretrain_fraction"):
        _objective(pretrain_fraction=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        EasyConsistencyTraining(ConsistencyParameterization(SCHEDULE, "x0")).stage


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(values)))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_ect_learns_the_mixture_and_more_steps_do_not_hurt(tmp_path, few_step):
    """ECT from a random initialisation (first half: diffusion training), three training seeds: the mean 1-step
    sliced W2 is several times below the untrained net's and the exact flow's single Euler step, and the mean
    error does not increase from 1 to 2 to 4 steps beyond two combined standard errors of the seeds."""
    data, ref, noise = few_step.reference_sets()
    param = ConsistencyParameterization(SCHEDULE, "x0")
    got: dict[int, list[float]] = {1: [], 2: [], 4: []}
    untrained = []
    for seed in range(3):
        torch.manual_seed(seed)
        obj = EasyConsistencyTraining(param)
        net = MLPDenoiser(MLPDenoiserConfig(width=64, depth=2))
        den = param.denoiser(copy.deepcopy(net))
        untrained.append(few_step.distance(den, "consistency", 1, noise, ref, t_start=obj.t_max))
        config = few_step.train_config(tmp_path / str(seed), 800)
        Trainer(net, obj, few_step.loader(data), config, callbacks=[ConsistencyCallback(obj)]).fit()
        assert obj.total_steps == 800 and obj.stage == 3
        student = param.denoiser(net.eval())
        for k in got:
            got[k].append(few_step.distance(student, "consistency", k, noise, ref, t_start=obj.t_max))
    stats = {k: _mean_se(v) for k, v in got.items()}
    teacher_one = few_step.distance(few_step.gmm.denoiser(SCHEDULE, "velocity"), "euler", 1, noise, ref)
    assert stats[1][0] < 0.3 * min(untrained), (stats, untrained)
    assert stats[1][0] < 0.35 * teacher_one, (stats, teacher_one)
    for a, b in ((1, 2), (2, 4)):
        (ma, sa), (mb, sb) = stats[a], stats[b]
        assert mb <= ma + 2 * math.hypot(sa, sb), stats
