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
