"""The one place where network outputs are converted between parameterisations.

With ``x_t = alpha x_0 + sigma eps`` (``t = 0`` data) a network predicts one of:

- ``eps``: the noise ``eps``;
- ``x0``: the clean data ``x_0``;
- ``v``: ``alpha eps - sigma x_0`` (Salimans & Ho 2022, Sec. 4; for VP ``alpha^2 + sigma^2 = 1``);
- ``velocity``: ``dx_t/dt = d_alpha x_0 + d_sigma eps`` (flow matching; for rectified flow ``eps - x_0``);
- ``score``: ``grad log p_t(x_t) = -eps / sigma`` (Tweedie; Song et al. 2021).

Each is an invertible affine map of ``(x_0, eps)`` given ``x_t`` and the path coefficients, so every
conversion goes through :func:`to_x0_eps` and :func:`from_x0_eps`; :func:`affine_x0_eps` gives the map
``(x_t, out) -> (x_0, eps)`` itself, which samplers fold into their update (one fused multiply-add per step). Nothing else in the repository
re-derives these formulas.

Edges: where a conversion divides by a coefficient that is zero (``alpha = 0`` at zero terminal SNR,
``sigma = 0`` at ``t = 0``) the missing part is set to zero rather than inf/NaN; the docstrings of
:func:`to_x0_eps` say which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

Prediction = Literal["eps", "x0", "v", "velocity", "score"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


def check_prediction(prediction: str) -> Prediction:
    """Return ``prediction`` if it is a known parameterisation, else raise a clear ValueError."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
    return prediction  # type: ignore[return-value]


@dataclass(frozen=True)
class PathCoefficients:
    """``alpha, sigma`` and their time derivatives at some ``t``, broadcastable against ``x_t``."""

    alpha: Tensor | float
    sigma: Tensor | float
    d_alpha: Tensor | float
    d_sigma: Tensor | float

    @classmethod
    def at(cls, schedule, t: Tensor, ndim: int, dtype: torch.dtype | None = None) -> PathCoefficients:
        """Coefficients of ``schedule`` at ``t`` (shape ``(B,)`` or scalar), reshaped to broadcast over
        ``ndim``-dimensional ``x_t`` ``(B, ...)`` and cast to ``dtype``."""
        t = torch.as_tensor(t)
        coeffs = schedule.coefficients(t)
        shape = (-1,) + (1,) * (ndim - 1) if t.ndim == 1 else ()
        return cls(*(c.reshape(shape).to(dtype) if dtype is not None else c.reshape(shape) for c in coeffs))


NEGLIGIBLE = 1e-30
"""A coefficient smaller than this in magnitude counts as zero where a conversion divides by it: its inverse
(> 1e30) would overflow float32 / float16 arithmetic, and what it multiplies is rounding noise there anyway
(``sigma < 1e-30`` is a time within ~1e-60 of the data for VP schedules, 1e-30 for rectified flow)."""


def _safe_inv(den: Tensor | float) -> Tensor | float:
    """``1 / den`` where ``|den| >= NEGLIGIBLE``, 0 elsewhere (no inf/NaN, gradients stay finite). Python floats
    stay python floats: decided on the host, no device work."""
    if not isinstance(den, Tensor):
        return 1.0 / den if abs(den) >= NEGLIGIBLE else 0.0
    zero = den.abs() < NEGLIGIBLE
    return torch.where(zero, torch.zeros_like(den), 1.0 / torch.where(zero, torch.ones_like(den), den))


@dataclass(frozen=True)
class AffineX0Eps:
    """``(x_0, eps)`` as affine functions of ``(x_t, out)`` for a network output ``out`` of one kind::

        x_0 = x0_x * x_t + x0_out * out,        eps = eps_x * x_t + eps_out * out

    Every parameterisation is such a map (the module docstring), so a sampler step that is linear in
    ``(x_t, x_0, eps)`` is linear in ``(x_t, out)``: :meth:`fold` gives its two coefficients, and the step
    costs one fused multiply-add instead of a conversion followed by the update. The coefficients are python
    floats (one time for the whole batch) or tensors broadcastable against ``x_t`` (per-sample times).
    """

    x0_x: Tensor | float
    x0_out: Tensor | float
    eps_x: Tensor | float
    eps_out: Tensor | float

    def fold(
        self, c_x: Tensor | float, c_x0: Tensor | float, c_eps: Tensor | float
    ) -> tuple[Tensor | float, Tensor | float]:
        """``(k_x, k_out)`` with ``c_x x_t + c_x0 x_0 + c_eps eps = k_x x_t + k_out out``."""
        return (
            c_x + c_x0 * self.x0_x + c_eps * self.eps_x,
            c_x0 * self.x0_out + c_eps * self.eps_out,
        )


def affine_x0_eps(prediction: Prediction, c: PathCoefficients) -> AffineX0Eps:
    """The affine map from ``(x_t, out)`` to ``(x_0, eps)`` for an output of kind ``prediction``.

    - eps: ``x_0 = (x_t - sigma eps) / alpha`` (0 where ``alpha = 0``).
    - x0: ``eps = (x_t - alpha x_0) / sigma`` (0 where ``sigma = 0``).
    - v: solves ``[alpha sigma; -sigma alpha] [x_0; eps] = [x_t; v]`` (never singular).
    - velocity: solves ``[alpha sigma; d_alpha d_sigma] [x_0; eps] = [x_t; u]`` (0 where singular).
    - score: ``eps = -sigma s``, ``x_0 = (x_t + sigma^2 s) / alpha`` (Tweedie's formula; 0 where ``alpha = 0``).
    """
    a, s = c.alpha, c.sigma
    if prediction == "eps":
        inv_a = _safe_inv(a)
        return AffineX0Eps(inv_a, -s * inv_a, 0.0, 1.0)
    if prediction == "x0":
        inv_s = _safe_inv(s)
        return AffineX0Eps(0.0, 1.0, inv_s, -a * inv_s)
    if prediction == "v":
        norm = a * a + s * s
        return AffineX0Eps(a / norm, -s / norm, s / norm, a / norm)
    if prediction == "velocity":
        inv_det = _safe_inv(a * c.d_sigma - s * c.d_alpha)
        return AffineX0Eps(c.d_sigma * inv_det, -s * inv_det, -c.d_alpha * inv_det, a * inv_det)
    if prediction == "score":
        inv_a = _safe_inv(a)
        return AffineX0Eps(inv_a, s * s * inv_a, 0.0, -s)
    check_prediction(prediction)
    raise AssertionError  # unreachable


def _is_const(c: Tensor | float, value: float) -> bool:
    return not isinstance(c, Tensor) and c == value


def _scale(a: Tensor | float, x: Tensor) -> Tensor:
    return x if _is_const(a, 1.0) else x * a


def lincomb(a: Tensor | float, x: Tensor, b: Tensor | float, y: Tensor) -> Tensor:
    """``a x + b y`` in as few kernels as the coefficients allow (``x``, ``y``: same shape ``(B, ...)``).

    Python-float coefficients of 0 or 1 drop their multiplication (the result may then be ``x`` or ``y``
    itself, never modified in place); otherwise it is one multiplication and one in-place ``add_`` on the
    fresh product. Tensor coefficients broadcast against ``x``."""
    if _is_const(b, 0.0):
        return x * 0.0 if _is_const(a, 0.0) else _scale(a, x)
    if _is_const(a, 0.0):
        return _scale(b, y)
    if isinstance(a, Tensor) or isinstance(b, Tensor) or x.dtype != y.dtype:
        return a * x + b * y
    if a == 1.0:
        return torch.add(x, y, alpha=b)
    return (x * a).add_(y, alpha=b)


def to_x0_eps(
    pred: Tensor, prediction: Prediction, x_t: Tensor, c: PathCoefficients
) -> tuple[Tensor, Tensor]:
    """``(x_0, eps)`` implied by a network output ``pred`` of kind ``prediction`` at ``x_t``: the affine map
    of :func:`affine_x0_eps` (whose docstring gives each formula and its edges) applied to ``(x_t, pred)``."""
    f = affine_x0_eps(prediction, c)
    return lincomb(f.x0_x, x_t, f.x0_out, pred), lincomb(f.eps_x, x_t, f.eps_out, pred)


def from_x0_eps(x0: Tensor, eps: Tensor, prediction: Prediction, c: PathCoefficients) -> Tensor:
    """The quantity of kind ``prediction`` given ``(x_0, eps)``; the score is 0 where ``sigma = 0``."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return c.alpha * eps - c.sigma * x0
    if prediction == "velocity":
        return c.d_alpha * x0 + c.d_sigma * eps
    if prediction == "score":
        return -eps * _safe_inv(c.sigma)
    check_prediction(prediction)
    raise AssertionError  # unreachable


def convert(pred: Tensor, source: Prediction, target: Prediction, x_t: Tensor, c: PathCoefficients) -> Tensor:
    """Convert a prediction of kind ``source`` into kind ``target`` at ``x_t``."""
    check_prediction(source)
    check_prediction(target)
    if source == target:
        return pred
    x0, eps = to_x0_eps(pred, source, x_t, c)
    return from_x0_eps(x0, eps, target, c)
