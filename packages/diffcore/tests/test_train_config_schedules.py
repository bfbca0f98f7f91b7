"""TrainConfig validation, the LR schedule formulas and the EMA against its closed form (no Trainer)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from diffcore.config import load_config
from diffcore.training import EMA, TrainConfig, build_lr_scheduler, lr_factor
from diffcore.training.ema import INITIAL_WEIGHT_WARNING, initial_weight_fraction, update_decay
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
        ("ema_warmup", 1),
        ("resume", ""),
        ("resume", 3),
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


def test_resume_is_read_from_a_set_override_and_paths_become_strings(tmp_path) -> None:
    assert load_config(TrainConfig, overrides=["resume=latest"]).resume == "latest"
    assert load_config(TrainConfig, overrides=["resume=null"]).resume is None
    assert TrainConfig(resume=tmp_path / "checkpoint-00000004").resume == str(
        tmp_path / "checkpoint-00000004"
    )


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_matches_closed_form_with_warmup_and_update_every(warmup: bool) -> None:
    """The average starts at the model's weights; update k (at step 3k) copies while 3k <= 4, then uses
    d_k = min(0.8, (1 + n) / (10 + n)), n = k - copies (LDM's LitEma), or 0.8 without warm-up."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay, warmup_steps, every = 0.8, 4, 3
    ema = EMA(model, decay, warmup_steps=warmup_steps, update_every=every, warmup=warmup)
    expected = [t.detach().double().clone() for t in [*model.parameters(), model[1].running_mean]]
    decays = []
    for step in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)  # buffers are averaged too
        if not ema.due(step):
            continue
        ema.update(model)
        k = step // every
        n = k - warmup_steps // every
        d = 0.0 if step <= warmup_steps else (min(decay, (1 + n) / (10 + n)) if warmup else decay)
        decays.append(d)
        current = [t.detach().double().clone() for t in [*model.parameters(), model[1].running_mean]]
        expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
    assert decays[0] == 0.0 and decays[1] == (2 / 11 if warmup else 0.8)
    assert decays[-1] == (min(0.8, 13 / 22) if warmup else 0.8)  # update 13 is the 12th after the copy
    got = [*ema.module.parameters(), ema.module[1].running_mean]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=0, atol=1e-5)
    assert ema.num_updates == len(range(every, 40, every)) == 13
    assert all(not p.requires_grad for p in ema.module.parameters())


def _fraction_of_start(ema: EMA, model: nn.Linear) -> float:
    """Starting weights all 1 and trained weights all 0: the average is the starting weights' share."""
    values = torch.cat([ema.module.weight.flatten(), ema.module.bias])
    assert torch.allclose(values, values[0].expand_as(values))
    return float(values[0])


@pytest.mark.parametrize(
    ("decay", "warmup", "updates", "closed_form"),
    [
        # without warm-up: d^N -- the run, 300 updates at 0.999, keeps 74% of the initialisation
        (0.999, False, 300, 0.999**300),
        (0.9, False, 7, 0.9**7),
        # warm-up below the cap: prod_{k=1..N} (1 + k) / (10 + k) = 10! (N + 1)! / (N + 10)!
        (0.999, True, 1, 2 / 11),
        (0.999, True, 2, 2 / 11 * 3 / 12),
        (0.999, True, 12, math.factorial(10) * math.factorial(13) / math.factorial(22)),
        # the cap reached: (1 + k) / (10 + k) < 0.6 for k <= 12, then 0.6 for the last 8 of 20 updates
        (0.6, True, 20, math.factorial(10) * math.factorial(13) / math.factorial(22) * 0.6**8),
    ],
)
def test_the_initialisations_share_of_the_ema_is_the_product_of_the_decays(
    decay: float, warmup: bool, updates: int, closed_form: float
) -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    ema = EMA(model, decay, warmup=warmup)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    for _ in range(updates):
        ema.update(model)
    assert ema.initial_weight_fraction == pytest.approx(closed_form, rel=1e-12)
    assert initial_weight_fraction(updates, decay, warmup=warmup) == pytest.approx(closed_form, rel=1e-12)
    assert _fraction_of_start(ema, model) == pytest.approx(closed_form, rel=1e-4, abs=1e-7)
    if updates == 300 and not warmup:
        assert round(closed_form, 2) == 0.74


def test_copy_updates_drop_the_initialisation_and_restart_the_warmup_count() -> None:
    assert [update_decay(k, 0.99, copy_updates=2) for k in (1, 2, 3, 4)] == [0.0, 0.0, 2 / 11, 3 / 12]
    assert initial_weight_fraction(5, 0.99, copy_updates=2) == 0.0
    assert initial_weight_fraction(0, 0.99, copy_updates=2) == 1.0
    ema = EMA(nn.Linear(2, 2), 0.99, warmup_steps=5, update_every=2)  # steps 2 and 4 copy
    assert ema.copy_updates == 2 and ema.decay_of(3) == 2 / 11


@pytest.mark.parametrize(
    ("decay", "warmup", "last_warning"),
    [
        (0.9999, True, 1),  # 2/11 = 18% after one update, 4.5% after two
        (0.999, False, 2994),  # 0.999^2994 = 5.001%, 0.999^2995 = 4.996%
        (0.5, False, 4),  # 6.25%, then 3.1%
    ],
)
def test_the_undertrained_warning_fires_exactly_while_over_five_percent_remain(
    decay: float, warmup: bool, last_warning: int
) -> None:
    assert INITIAL_WEIGHT_WARNING == 0.05
    model = nn.Linear(2, 2)
    ema = EMA(model, decay, warmup=warmup)
    fired = []
    for _ in range(last_warning + 1):
        ema.update(model)
        fired.append(ema.undertrained_warning() is not None)
    assert fired == [True] * last_warning + [False]
    message = EMA(model, 0.5, warmup=False)
    message.update(model)
    assert message.undertrained_warning() == (
        "ema: after 1 updates the EMA weights are still 50.0% the weights training started from "
        "(ema_decay=0.5, ema_warmup=False); set ema_warmup=True, or lower ema_decay, or use the trained "
        "model, not the EMA one"
    )


def test_ema_update_equals_averaged_models_own_update_and_survives_a_reload() -> None:
    """EMA.update (updates counted on the host, no device sync) is AveragedModel.update_parameters once
    past its first update (which copies; ours averages into the starting weights)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model[1].num_batches_tracked.fill_(5)  # an integer buffer takes the non-foreach branch
    ema = EMA(model, 0.9, warmup=False)
    reference = AveragedModel(copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    reference.n_averaged.fill_(1)  # averages from its first update on, starting at the model's weights
    for step in range(1, 6):
        with torch.no_grad():
            for t in [*model.parameters(), model[1].running_var]:
                t.add_(torch.rand_like(t))
            model[1].num_batches_tracked.add_(10)
        ema.update(model)
        reference.update_parameters(model)
        if step in (2, 3):  # a resumed run continues the count, through EMA's loader or the module's
            state = ema.state_dict()
            ema = EMA(model, 0.9, warmup=False)
            (ema.load_state_dict if step == 2 else ema.averaged.load_state_dict)(state)
    got, want = ema.averaged.state_dict(), reference.state_dict()
    want["n_averaged"] = want["n_averaged"] - 1
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
    assert ema.num_updates == 5 == int(ema.averaged.n_averaged)
    assert ema.initial_weight_fraction == pytest.approx(0.9**5, rel=1e-12)  # the count survived the reloads


def test_ema_rejects_bad_decay() -> None:
    with pytest.raises(ValueError, match=r"^decay:"):
        EMA(nn.Linear(2, 2), 1.0)
    with pytest.raises(ValueError, match=r"^update:"):
        update_decay(0, 0.9)
