"""The one place where network outputs are converted between parameterisations.

With ``x_t = alpha x_0 + sigma eps`` (``t = 0`` data) a network predicts one of:

- ``eps``: the noise ``eps``;
- ``x0``: the clean data ``x_0``;
- ``v``: ``alpha eps - sigma x_0`` (Salimans & Ho 2022, Sec. 4; for VP ``alpha^2 + sigma^2 = 1``);
- ``velocity``: ``dx_t/dt = d_alpha x_0 + d_sigma eps`` (flow matching; for rectified flow ``eps - x_0``);
- ``score``: ``grad log p_t(x_t) = -eps / sigma`` (Tweedie; Song et al. 2021).

Each is an invertible affine map of ``(x_0, eps)`` given ``x_t`` and the path coefficients, so every
conversion goes through :func:`to_x0_eps` and :func:`from_x0_eps`. Nothing else in the repository
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


def _safe_div(num: Tensor, den: Tensor | float) -> Tensor:
    """``num / den`` where ``den != 0``, 0 elsewhere (no inf/NaN, gradients stay finite)."""
    if not isinstance(den, Tensor):  # python scalars: decided on the host, no device work
        return num / den if den != 0 else torch.zeros_like(num)
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def to_x0_eps(
    pred: Tensor, prediction: Prediction, x_t: Tensor, c: PathCoefficients
) -> tuple[Tensor, Tensor]:
    """``(x_0, eps)`` implied by a network output ``pred`` of kind ``prediction`` at ``x_t``.

    - eps: ``x_0 = (x_t - sigma eps) / alpha`` (0 where ``alpha = 0``).
    - x0: ``eps = (x_t - alpha x_0) / sigma`` (0 where ``sigma = 0``).
    - v: solves ``[alpha sigma; -sigma alpha] [x_0; eps] = [x_t; v]`` (never singular).
    - velocity: solves ``[alpha sigma; d_alpha d_sigma] [x_0; eps] = [x_t; u]``.
    - score: ``eps = -sigma s``, ``x_0 = (x_t + sigma^2 s) / alpha`` (Tweedie's formula).
    """
    a, s = c.alpha, c.sigma
    if prediction == "eps":
        return _safe_div(x_t - s * pred, a), pred
    if prediction == "x0":
        return pred, _safe_div(x_t - a * pred, s)
    if prediction == "v":
        norm = a * a + s * s
        return (a * x_t - s * pred) / norm, (s * x_t + a * pred) / norm
    if prediction == "velocity":
        det = a * c.d_sigma - s * c.d_alpha
        return _safe_div(c.d_sigma * x_t - s * pred, det), _safe_div(a * pred - c.d_alpha * x_t, det)
    if prediction == "score":
        eps = -s * pred
        return _safe_div(x_t - s * eps, a), eps
    check_prediction(prediction)
    raise AssertionError  # unreachable


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
        return _safe_div(-eps, c.sigma)
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
