"""TrainConfig validation, the LR schedule formulas and the EMA against its closed form (no Trainer)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from diffcore.training import EMA, TrainConfig, build_lr_scheduler, lr_factor
from torch import nn


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("steps", 2.5),
        ("lr", -1e-3),
        ("lr", float("nan")),
        ("weight_decay", -0.1),
        ("betas", (0.9, 1.0)),
        ("lr_schedule", "linear"),
        ("warmup_steps", -1),
        ("min_lr_ratio", 1.5),
        ("grad_accum_steps", 0),
        ("max_grad_norm", 0.0),
        ("mixed_precision", "fp8"),
        ("ema_decay", 1.0),
        ("ema_update_every", 0),
        ("log_every", 0),
        ("checkpoint_every", 0),
        ("keep_last", 0),
        ("output_dir", ""),
        ("compile", "yes"),
        ("compile_ddp_optimizer", 1),
    ],
)
def test_bad_config_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        TrainConfig(**{field: value})


def test_cosine_warmup_must_be_shorter_than_training() -> None:
    with pytest.raises(ValueError, match=r"^warmup_steps:"):
        TrainConfig(steps=10, warmup_steps=10, lr_schedule="cosine")
    TrainConfig(steps=10, warmup_steps=10, lr_schedule="constant")  # constant after warmup is fine


def test_betas_from_json_list_become_a_tuple() -> None:
    assert TrainConfig(betas=[0.9, 0.95]).betas == (0.9, 0.95)  # type: ignore[arg-type]


@pytest.mark.parametrize("min_ratio", [0.0, 0.1])
def test_lr_factor_matches_the_formulas(min_ratio: float) -> None:
    w, total = 10, 110

    def f(s: int) -> float:
        return lr_factor(s, schedule="cosine", warmup_steps=w, total_steps=total, min_lr_ratio=min_ratio)

    # Linear warmup (s + 1) / W: 1/10 at the first step, 1 at the last warmup step.
    assert f(0) == pytest.approx(0.1)
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)
    # Cosine: 1 at s = W, the midpoint (1 + m) / 2 half-way, m at the end and beyond.
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx((1.0 + min_ratio) / 2)
    assert f(10 + 25) == pytest.approx(min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi / 4)) / 2)
    assert f(110) == pytest.approx(min_ratio)
    assert f(500) == pytest.approx(min_ratio)
    # Constant: warmup then flat.
    assert lr_factor(3, schedule="constant", warmup_steps=w, total_steps=total) == pytest.approx(0.4)
    assert lr_factor(77, schedule="constant", warmup_steps=w, total_steps=total) == 1.0
    assert lr_factor(0, schedule="constant", warmup_steps=0, total_steps=total) == 1.0


def test_lr_factor_rejects_negative_step_and_unknown_schedule() -> None:
    with pytest.raises(ValueError, match=r"^step:"):
        lr_factor(-1, schedule="cosine", warmup_steps=0, total_steps=10)
    with pytest.raises(ValueError, match=r"^schedule:"):
        lr_factor(1, schedule="poly", warmup_steps=0, total_steps=10)  # type: ignore[arg-type]


def test_lambda_lr_follows_lr_factor_step_by_step() -> None:
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = build_lr_scheduler(opt, schedule="cosine", warmup_steps=3, total_steps=12, min_lr_ratio=0.2)
    for s in range(15):
        expected = 2.0 * lr_factor(s, schedule="cosine", warmup_steps=3, total_steps=12, min_lr_ratio=0.2)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)
        opt.step()
        sched.step()


def test_ema_matches_closed_form_with_warmup_and_update_every() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay, warmup, every = 0.8, 2, 3
    ema = EMA(model, decay, warmup_steps=warmup, update_every=every)
    expected: list[torch.Tensor] | None = None
    for step in range(1, 16):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)  # buffers are averaged too
        if not ema.due(step):
            continue
        ema.update(model, step)
        current = [t.detach().double().clone() for t in [*model.parameters(), model[1].running_mean]]
        if expected is None:
            expected = current  # the first update copies
        else:
            d = 0.0 if step <= warmup else decay
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
    assert expected is not None
    got = [*ema.module.parameters(), ema.module[1].running_mean]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=0, atol=1e-6)
    assert ema.num_updates == len(range(every, 16, every))
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_ema_update_equals_averaged_models_own_update_and_survives_a_reload() -> None:
    """EMA.update (updates counted on the host, no device sync) is AveragedModel.update_parameters."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model[1].num_batches_tracked.fill_(5)  # an integer buffer takes the non-foreach branch
    ema = EMA(model, 0.9)
    reference = AveragedModel(copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for step in range(1, 6):
        with torch.no_grad():
            for t in [*model.parameters(), model[1].running_var]:
                t.add_(torch.rand_like(t))
            model[1].num_batches_tracked.add_(10)
        ema.update(model, step)
        reference.update_parameters(model)
        if step in (2, 3):  # a resumed run continues the count, through EMA's loader or the module's
            state = ema.state_dict()
            ema = EMA(model, 0.9)
            (ema.load_state_dict if step == 2 else ema.averaged.load_state_dict)(state)
    for got, want in zip(ema.averaged.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert ema.num_updates == 5 == int(ema.averaged.n_averaged)


def test_ema_rejects_bad_decay() -> None:
    with pytest.raises(ValueError, match=r"^decay:"):
        EMA(nn.Linear(2, 2), 1.0)
