"""Value checks of ``diffcore.paths.predictions`` that the equation tests left open: each kills mutants that
``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left and why)."""

from __future__ import annotations

import pytest
import torch
from diffcore.paths.predictions import NEGLIGIBLE, _safe_inv, lincomb

F64 = torch.float64


def test_safe_inverse_inverts_down_to_negligible_included():
    """1 / den where |den| >= NEGLIGIBLE (the bound included), 0 below it, for python floats and tensors."""
    assert _safe_inv(NEGLIGIBLE) == 1.0 / NEGLIGIBLE and _safe_inv(-NEGLIGIBLE) == -1.0 / NEGLIGIBLE
    assert _safe_inv(NEGLIGIBLE / 2) == 0.0 and _safe_inv(0.0) == 0.0 and _safe_inv(4.0) == 0.25
    den = torch.tensor([NEGLIGIBLE, -NEGLIGIBLE, NEGLIGIBLE / 2, 0.0, 4.0], dtype=F64)
    expected = torch.tensor([1 / NEGLIGIBLE, -1 / NEGLIGIBLE, 0.0, 0.0, 0.25], dtype=F64)
    torch.testing.assert_close(_safe_inv(den), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    "a, b",
    [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (0.0, 1.0), (0.0, -3.0), (1.0, 2.5), (2.0, -0.5), (-1.0, 1.0)],
)
def test_lincomb_of_python_floats_is_a_x_plus_b_y(a, b):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, generator=g, dtype=F64), torch.randn(2, 3, generator=g, dtype=F64)
    out = lincomb(a, x, b, y)
    torch.testing.assert_close(out, a * x + b * y, rtol=1e-15, atol=0)
    assert out.dtype == F64 and out.shape == x.shape


def test_lincomb_never_writes_into_its_inputs():
    x, y = torch.ones(3, dtype=F64), torch.full((3,), 2.0, dtype=F64)
    for a, b in [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (3.0, 1.0), (0.0, 0.0)]:
        lincomb(a, x, b, y)
        assert (x == 1).all() and (y == 2).all()


def test_lincomb_of_mixed_dtypes_and_tensor_coefficients():
    """Different dtypes promote like torch (float32 x, float64 y -> float64), also with float coefficients;
    tensor coefficients of 0 or 1 are used as values, not as shortcuts."""
    x32 = torch.tensor([1.0, 2.0])
    y64 = torch.tensor([0.5, -1.0], dtype=F64)
    out = lincomb(2.0, x32, 3.0, y64)
    assert out.dtype == F64
    torch.testing.assert_close(out, torch.tensor([3.5, 1.0], dtype=F64))
    x, y = torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([3.0, 5.0], dtype=F64)
    zero, one = torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)
    torch.testing.assert_close(lincomb(zero, x, one, y), y)
    torch.testing.assert_close(lincomb(one, x, zero, y), x)
    torch.testing.assert_close(
        lincomb(torch.tensor([[2.0], [0.0]], dtype=F64), x, 0.0, y),
        torch.tensor([[2.0, 4.0], [0.0, 0.0]], dtype=F64),
    )
