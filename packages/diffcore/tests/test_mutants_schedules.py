"""Value checks of ``diffcore.paths.schedules`` that the equation tests left open: each kills mutants that
``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left and why)."""

from __future__ import annotations

import math

import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.schedules import check_time

F64 = torch.float64


# ----------------------------------------------------------------------------- check_time


@pytest.mark.parametrize("t", [torch.tensor([True]), torch.tensor([0.5j]), torch.tensor([False, True])])
def test_check_time_refuses_bool_and_complex_tensors(t):
    with pytest.raises(TypeError, match="expected real times"):
        check_time(t)


@pytest.mark.parametrize("bad", [[1.5], [-0.25], [0.5, 1.0 + 1e-12], [math.nan], [0.0, -1e-300]])
def test_check_time_refuses_cpu_tensors_outside_zero_one(bad):
    with pytest.raises(ValueError, match="expected times in"):
        check_time(torch.tensor(bad, dtype=F64))
    with pytest.raises(ValueError, match="expected times in"):
        schedules.get("vp-linear").alpha(torch.tensor(bad, dtype=F64))


@pytest.mark.parametrize("good", [[0.0], [1.0], [0.0, 1.0], [], [[0.25, 0.75]]])
def test_check_time_accepts_the_closed_interval(good):
    check_time(torch.tensor(good, dtype=F64))


def test_check_time_never_reads_a_device_tensor():
    """Only host values are checked (no device sync): a meta tensor, out of range or not, passes unread."""
    check_time(torch.empty(3, device="meta"))
    check_time(torch.empty(1, device="meta"))


@pytest.mark.parametrize("t", [0, 1, 0.0, 1.0, 0.5])
def test_check_time_accepts_python_numbers_in_range(t):
    check_time(t)


@pytest.mark.parametrize("t", [1.0000001, -1e-9, math.nan, math.inf])
def test_check_time_refuses_python_numbers_outside(t):
    with pytest.raises(ValueError, match="expected a time in"):
        check_time(t)


@pytest.mark.parametrize("t", [True, "0.5", None])
def test_check_time_refuses_non_numbers(t):
    with pytest.raises(TypeError, match="expected a float or a tensor"):
        check_time(t)


# ----------------------------------------------------------------------------- VP cosine


@pytest.mark.parametrize("s", [0.008, 0.3, 3.0])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_cosine_alpha_never_exceeds_one(s, dtype):
    """abar(0) = f(0) / f(0) = 1; for s = 0.3 or 3 in float32 the ratio of the two rounded cosines is 1 + 1 ulp,
    which the clamp to [0, 1] removes (alpha > 1 would give 1 - alpha^2 < 0 under sigma's square root)."""
    sched = schedules.VPCosine(s)
    a = sched.alpha(torch.tensor([0.0, 1e-7, 0.5, 1.0], dtype=dtype))
    assert (a <= 1).all() and (a >= 0).all()
    assert a[0].item() == pytest.approx(1.0, abs=3e-16 if dtype == F64 else 0)
    assert a[-1].item() == 0.0


# ----------------------------------------------------------------------------- DiscreteVP


def test_a_one_step_table_is_a_schedule():
    """T = 1: abar(1) = 1 - beta_1, log abar linear in t in between (the table's interpolation)."""
    sched = schedules.DiscreteVP(torch.tensor([0.5], dtype=F64))
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    expected = torch.exp(0.5 * t * math.log(0.5))
    torch.testing.assert_close(sched.alpha(t), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(
        sched.d_log_alpha_bar(t), torch.full_like(t, math.log(0.5)), rtol=1e-14, atol=0
    )


@pytest.mark.parametrize("t", [0.0, 0.00037, 0.4999, 0.5, 0.5004, 0.9993, 1.0])
def test_discrete_log_alpha_bar_interpolates_the_table_linearly(t):
    """Between t_i = i / T and t_{i+1}, log abar is the straight line through the two table values, and its
    slope is their difference times T (the cell holding t, the last cell at t = 1)."""
    betas = schedules.betas_for("linear", 1000)
    table = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(torch.log1p(-betas), 0)])
    i = min(math.floor(t * 1000), 999)
    frac = t * 1000 - i
    sched = schedules.get("ddpm-linear")
    tt = torch.tensor([t], dtype=F64)
    value = table[i] + frac * (table[i + 1] - table[i])
    torch.testing.assert_close(sched.log_alpha_bar(tt), value.reshape(1), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        sched.d_log_alpha_bar(tt), ((table[i + 1] - table[i]) * 1000).reshape(1), rtol=1e-12, atol=0
    )


# ----------------------------------------------------------------------------- wrappers


def test_zero_terminal_snr_alpha_is_one_at_t_zero_never_above():
    """alpha'(0) = (alpha(0) - alpha(1)) * alpha(0) / (alpha(0) - alpha(1)) = 1; for VPLinear(0.1, 7) in float32
    the two roundings give 1 + 1 ulp, which the clamp to [0, 1] removes."""
    sched = schedules.ZeroTerminalSNR(schedules.VPLinear(0.1, 7.0))
    for dtype in (torch.float32, F64):
        a = sched.alpha(torch.tensor([0.0, 0.5, 1.0], dtype=dtype))
        assert a[0].item() == pytest.approx(1.0, abs=2e-16) and a[0].item() <= 1.0
        assert a[-1].item() == 0.0 and 0 < a[1].item() < 1


@pytest.mark.parametrize("name", ["vp-linear", "ddpm-linear"])
@pytest.mark.parametrize("t", [0.3, 1 - 3e-7, 1.0])
def test_shifted_d_warp_is_the_derivative_of_the_warp_up_to_t_one(name, t):
    """dt'/dt from the central difference of lambda, one-sided where t is within its step h = 1e-6 of t = 1
    (each quotient over its own clamped interval), against a backward difference of the warp (shift 0.5: t' < t)."""
    sched = schedules.Shifted(schedules.get(name), 0.5)
    delta = 1e-5
    tt = torch.tensor([t], dtype=F64)
    numeric = (sched.warp(tt) - sched.warp(tt - delta)) / delta
    torch.testing.assert_close(sched.d_warp(tt), numeric, rtol=2e-3, atol=0)


def test_vp_linear_inverse_clamps_to_the_time_range():
    """log-SNRs beyond lambda(1) map to t = 1 and +inf to t = 0, like every other schedule's inverse."""
    sched = schedules.get("vp-linear")
    end = sched.log_snr(torch.tensor([1.0], dtype=F64))
    t = sched.t_from_log_snr(torch.cat([end - 3.0, end, torch.tensor([math.inf], dtype=F64)]))
    torch.testing.assert_close(t, torch.tensor([1.0, 1.0, 0.0], dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["vp-linear", "ddpm-linear"])
def test_shifted_towards_noise_saturates_at_the_base_end_point(name):
    """Shifting a base with a finite terminal log-SNR towards noise: where log_snr(t) - 2 log 2 < lambda_base(1)
    the warp holds t' = 1, so alpha equals the base's alpha(1) and d_warp (hence d_alpha) is 0 there; before
    that point the shifted log-SNR is exactly the base's minus 2 log 2."""
    base = schedules.get(name)
    sched = schedules.Shifted(base, 2.0)
    one = torch.tensor([1.0], dtype=F64)
    lam_end = base.log_snr(one)
    # t* where the shifted log-SNR reaches the base's end, by bisection on the base.
    t_star = base.t_from_log_snr(lam_end + 2 * math.log(2.0)).item()
    assert 0.5 < t_star < 1.0
    late = torch.tensor([0.5 * (t_star + 1), 0.99, 1.0], dtype=F64)
    torch.testing.assert_close(sched.alpha(late), base.alpha(one).expand(3), rtol=0, atol=1e-12)
    torch.testing.assert_close(sched.d_warp(late), torch.zeros(3, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(sched.d_alpha(late), torch.zeros(3, dtype=F64), rtol=0, atol=0)
    early = torch.tensor([0.2, 0.5 * t_star, t_star - 1e-3], dtype=F64)
    torch.testing.assert_close(
        sched.log_snr(early), base.log_snr(early) - 2 * math.log(2.0), rtol=1e-6, atol=1e-6
    )
    assert (sched.d_warp(early) > 0).all()


@pytest.mark.parametrize("name", ["vp-linear", "ddpm-linear"])
@pytest.mark.parametrize("shift", [2.0, 0.5])
def test_shifted_d_warp_at_t_zero_is_its_limit_shift_squared(name, shift):
    """Near t = 0 a VP base has sigma^2 ~ c t, so lambda ~ -log t and lambda(t') = lambda(t) - 2 log s gives
    t' ~ s^2 t: d_warp(0) = s^2 (the finite difference there would be inf / inf)."""
    sched = schedules.Shifted(schedules.get(name), shift)
    got = sched.d_warp(torch.tensor([0.0], dtype=F64))
    torch.testing.assert_close(got, torch.tensor([shift**2], dtype=F64), rtol=1e-3, atol=0)


@pytest.mark.parametrize("shift", [2.0, 0.5])
def test_shifted_cosine_d_warp_at_t_one_is_its_limit(shift):
    """vp-cosine reaches alpha = 0 at t = 1 with alpha ~ c (1 - t), so lambda ~ 2 log(1 - t) and the shift gives
    1 - t' ~ (1 - t) / s: d_warp(1) = 1 / s, with no saturation (lambda(1) = -inf)."""
    sched = schedules.Shifted(schedules.get("vp-cosine"), shift)
    got = sched.d_warp(torch.tensor([1.0, 1 - 3e-7], dtype=F64))
    torch.testing.assert_close(got, torch.full((2,), 1 / shift, dtype=F64), rtol=1e-3, atol=0)
