"""The improved-CT curriculum follows the Trainer run that drives it (Song & Dhariwal 2023, Eq. 5):
``total_steps=None`` takes the run's ``config.steps``, a disagreeing explicit value is refused, and under a
wall-time budget the stages advance with the fraction of the budget spent."""

from __future__ import annotations

import types

import pytest
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    ConsistencyTraining,
    MLPDenoiser,
    MLPDenoiserConfig,
    ict_num_points,
)
from diffcore.distill import consistency as consistency_module
from diffcore.training import Callback, Trainer

SCHEDULE = "rectified-flow"


class _Record(Callback):
    """Records the objective's number of discretisation points after every step."""

    def __init__(self, objective: ConsistencyTraining) -> None:
        self.objective = objective
        self.points: list[int] = []

    def on_step_end(self, trainer, step: int) -> None:
        self.points.append(self.objective.num_points)


def _objective(**kw) -> ConsistencyTraining:
    return ConsistencyTraining(ConsistencyParameterization(SCHEDULE, "x0"), s0=2, s1=16, distance="l2", **kw)


def _fit(tmp_path, few_step, obj: ConsistencyTraining, steps: int) -> _Record:
    torch.manual_seed(0)
    data = few_step.gmm.sample(256, torch.Generator().manual_seed(0)).float()
    record = _Record(obj)
    net = MLPDenoiser(MLPDenoiserConfig(width=8, depth=1, time_features=8))
    callbacks = [ConsistencyCallback(obj), record]
    Trainer(
        net,
        obj,
        few_step.loader(data, batch_size=32),
        few_step.train_config(tmp_path, steps),
        callbacks=callbacks,
    ).fit()
    return record


def test_curriculum_takes_the_trainer_step_count(tmp_path, few_step):
    obj = _objective()
    assert obj.total_steps is None
    record = _fit(tmp_path, few_step, obj, 20)
    assert obj.total_steps == 20 and obj.step == 20
    # recorded after step k = 1..20: N(k) of a 20-step run, ending on the last stage s1 + 1
    assert record.points == [ict_num_points(k, 20, 2, 16) for k in range(1, 21)]
    assert record.points[0] == 3 and record.points[-1] == 17
    assert sorted(set(record.points)) == [3, 5, 9, 17]  # every doubling stage is visited


def test_curriculum_refuses_a_different_explicit_length(tmp_path, few_step):
    with pytest.raises(ValueError, match="total_steps"):
        _fit(tmp_path, few_step, _objective(total_steps=1000), 10)


def test_curriculum_without_a_length_names_the_missing_parameter():
    obj = _objective()
    with pytest.raises(ValueError, match="total_steps"):
        obj(MLPDenoiser(MLPDenoiserConfig(width=8, depth=1)), torch.zeros(4, 2))


def test_curriculum_follows_the_wall_time_budget(monkeypatch):
    """Half the budget spent after 10 of 1000 steps: the curriculum is at step 500, not 10."""
    obj = _objective(total_steps=1000)
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(consistency_module.time, "perf_counter", lambda: clock.now)
    trainer = types.SimpleNamespace(
        step=0, unwrapped_model=None, config=types.SimpleNamespace(steps=1000, max_seconds=60.0)
    )
    callback = ConsistencyCallback(obj)
    callback.on_train_start(trainer)
    clock.now = 30.0
    callback.on_step_end(trainer, 10)
    assert obj.step == 500
    assert obj.num_points == ict_num_points(500, 1000, 2, 16)
    clock.now = 1.0  # ahead of the clock: the step count leads
    callback.on_step_end(trainer, 700)
    assert obj.step == 700
    clock.now = 120.0  # past the budget: capped at the last step
    callback.on_step_end(trainer, 710)
    assert obj.step == 1000 and obj.num_points == 17
