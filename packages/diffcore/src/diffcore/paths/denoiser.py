"""``Denoiser``: a network together with its schedule and parameterisation.

Two methods, one for each side of the interface:

- ``x0_eps(x, t, **cond)`` is what a denoiser *implements*: the data and noise estimates ``(x_0, eps)`` from
  one network call. Guidance wrappers implement only this. ``x0``, ``eps``, ``velocity`` and ``score``
  follow from it through :mod:`diffcore.paths.predictions`; ``t`` is a python float (one time for the batch)
  or a ``(B,)`` tensor (per-sample times, as training and distillation use).
- ``estimate(x, t, **cond)`` is what every *sampler* calls: one network evaluation at a python-float time,
  returned as an :class:`Estimate`, which gives ``x0``, ``eps`` and the velocity, and any linear combination
  ``c_x x + c_x0 x0 + c_eps eps`` of them in one fused multiply-add. A plain :class:`Denoiser` hands over
  the raw network output with the python-float affine map that turns it into ``(x_0, eps)``
  (:func:`~diffcore.paths.predictions.affine_x0_eps`), so the conversion folds into the sampler's update;
  a wrapper's estimate is its ``x0`` (the same fold, for the ``x0`` parameterisation).

Coefficients at a python-float ``t`` are python floats computed on the CPU (memoised per schedule), so a
sampling loop built on :meth:`DenoiserBase.estimate` never synchronises host and device and can be
captured as a CUDA graph. ``t = 0`` is data, ``t = 1`` noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.predictions import (
    AffineX0Eps,
    PathCoefficients,
    Prediction,
    affine_x0_eps,
    check_prediction,
    from_x0_eps,
    to_x0_eps,
)
from diffcore.paths.schedules import Schedule, check_time, memoise_per_schedule
from diffcore.paths.schedules import get as get_schedule

NetworkFn = Callable[..., Tensor]
HALF_DTYPES = (torch.float16, torch.bfloat16)
TIME_TENSORS_KEPT = 512
"""How many ``(B,)`` network time tensors a :class:`Denoiser` keeps for reuse (a few grids' worth)."""


@memoise_per_schedule(maxsize=8192)
def scalar_coefficients(schedule: Schedule, t: float) -> PathCoefficients:
    """Python-float path coefficients of ``schedule`` at time ``t``, memoised: a sampler asks for the same
    few grid times at every network call, and evaluating a schedule on the host costs far more than a
    step's own arithmetic (a discrete table: ~20 small tensor ops)."""
    c = PathCoefficients.at(schedule, torch.tensor(t, dtype=torch.float64), 0)
    return PathCoefficients(*(float(v) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))


def weighted_sum(terms: Sequence[tuple[Tensor, float]]) -> Tensor:
    """``sum_j k_j y_j`` over ``terms = [(y_j, k_j), ...]`` (tensors ``(B, ...)``, python-float ``k_j``).

    Terms on the same tensor object are merged and zero weights dropped, then it is one multiplication and
    one in-place ``add_`` per further term on the fresh product, in float32 at least (half-precision
    tensors are upcast and the result cast back to the first tensor's dtype)."""
    merged: dict[int, list] = {}
    for y, k in terms:
        entry = merged.setdefault(id(y), [y, 0.0])
        entry[1] += k
    live = [(y, k) for y, k in merged.values() if k != 0]
    first = terms[0][0]
    if not live:
        return torch.zeros_like(first)
    if first.dtype in HALF_DTYPES:
        return weighted_sum([(y.float(), k) for y, k in live]).to(first.dtype)
    (y0, k0), *rest = live
    if not rest:
        return y0 if k0 == 1.0 else y0 * k0
    if k0 == 1.0 and len(rest) == 1:
        return torch.add(y0, rest[0][0], alpha=rest[0][1])
    acc = y0 * k0
    for y, k in rest:
        acc.add_(y, alpha=k)
    return acc


class Estimate:
    """One network evaluation at ``(x_t, t)``: the state ``x`` ``(B, ...)``, the output ``out`` and the affine
    map ``f`` with ``x_0 = f.x0_x x + f.x0_out out`` and ``eps = f.eps_x x + f.eps_out out`` (python floats),
    and the path coefficients ``c`` at ``t``.

    Samplers write their update as a linear combination of ``x``, ``x0`` and ``eps`` (or the probability-flow
    velocity ``d_alpha x0 + d_sigma eps``): :meth:`combine` folds it into ``k_x x + k_out out`` and runs it as one
    fused multiply-add; :meth:`terms` gives the two weighted tensors for a longer :func:`weighted_sum`.
    ``x0``, ``eps`` and ``velocity`` materialise the estimates themselves (once each, on first use).
    """

    def __init__(self, x: Tensor, out: Tensor, f: AffineX0Eps, c: PathCoefficients, t: float) -> None:
        self.x, self.out, self.f, self.c, self.t = x, out, f, c, t

    @classmethod
    def of(cls, x: Tensor, kind: Prediction, value: Tensor, t: float, c: PathCoefficients) -> Estimate:
        """The estimate holding ``value`` (of kind ``kind``) at the state ``x`` with coefficients ``c``: the
        other quantities are read off ``x_t = alpha x_0 + sigma eps``."""
        return cls(x, value, affine_x0_eps(kind, c), c, t)

    def with_x0(self, x0: Tensor) -> Estimate:
        """The same state and time with another data estimate ``x0`` (``eps`` read off ``x_t`` again): how a
        higher-order step feeds a better ``x0`` to the first-order (DDIM) step (DPM-Solver++(2S))."""
        return Estimate.of(self.x, "x0", x0, self.t, self.c)

    def coefficients(
        self, x: float = 0.0, x0: float = 0.0, eps: float = 0.0, velocity: float = 0.0
    ) -> tuple[float, float]:
        """``(k_x, k_out)`` with ``x * x_t + x0 * x_0 + eps * eps + velocity * v = k_x x_t + k_out out``."""
        c_x0 = x0 + velocity * self.c.d_alpha if velocity else x0
        c_eps = eps + velocity * self.c.d_sigma if velocity else eps
        return self.f.fold(x, c_x0, c_eps)

    def combine(self, x: float = 0.0, x0: float = 0.0, eps: float = 0.0, velocity: float = 0.0) -> Tensor:
        """``x * x_t + x0 * x_0 + eps * eps + velocity * v`` (python-float weights): one fused multiply-add, in
        float32 at least, in ``x_t``'s dtype."""
        return weighted_sum(self.terms(x=x, x0=x0, eps=eps, velocity=velocity))

    def terms(
        self, x: float = 0.0, x0: float = 0.0, eps: float = 0.0, velocity: float = 0.0
    ) -> list[tuple[Tensor, float]]:
        """The same combination as ``[(x_t, k_x), (out, k_out)]``, to sum with other terms (:func:`weighted_sum`)."""
        k_x, k_out = self.coefficients(x=x, x0=x0, eps=eps, velocity=velocity)
        return [(self.x, k_x), (self.out, k_out)]

    @cached_property
    def x0(self) -> Tensor:
        """``E[x_0 | x_t]`` ``(B, ...)``."""
        return self.combine(x0=1.0)

    @cached_property
    def eps(self) -> Tensor:
        """``E[eps | x_t]`` ``(B, ...)``."""
        return self.combine(eps=1.0)

    @cached_property
    def velocity(self) -> Tensor:
        """The probability-flow ODE velocity ``dx/dt = d_alpha x_0 + d_sigma eps`` ``(B, ...)``."""
        return self.combine(velocity=1.0)


def _time_dtype(x: Tensor) -> torch.dtype:
    """The network's time dtype: float64 for float64 states, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _upcast(x: Tensor) -> Tensor:
    return x.float() if x.dtype in HALF_DTYPES else x


class DenoiserBase(ABC):
    """What every denoiser (plain or guided) provides. Subclasses implement :meth:`x0_eps`."""

    schedule: Schedule

    @abstractmethod
    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        """``(E[x0 | x_t], E[eps | x_t])`` at ``(x, t)`` from one network evaluation."""

    def estimate(self, x: Tensor, t: float, **cond: Any) -> Estimate:
        """One network evaluation at the python-float time ``t`` as an :class:`Estimate` (what samplers use).

        Here: the ``x0`` of :meth:`x0_eps`, with ``eps`` read off ``x_t = alpha x0 + sigma eps``."""
        check_time(t)
        t = float(t)
        return Estimate.of(x, "x0", self.x0_eps(x, t, **cond)[0], t, scalar_coefficients(self.schedule, t))

    def coefficients(self, t: float | Tensor, x: Tensor) -> PathCoefficients:
        """Path coefficients at ``t`` broadcastable against ``x``, computed in float64.

        A python float ``t`` gives python-float coefficients, evaluated on the CPU: no device
        synchronisation and nothing that stops a CUDA graph capture. A ``(B,)`` tensor gives
        ``(B, 1, ...)`` tensors in ``x``'s dtype."""
        if isinstance(t, Tensor) and t.ndim == 1:
            return PathCoefficients.at(self.schedule, t.to(torch.float64), x.ndim, x.dtype)
        return scalar_coefficients(self.schedule, float(t))

    def predict(self, kind: Prediction, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The estimate of kind ``kind`` (eps, x0, v, velocity or score) at ``(x, t)``."""
        check_prediction(kind)
        x0, eps = self.x0_eps(x, t, **cond)
        xf = _upcast(x)
        return from_x0_eps(_upcast(x0), _upcast(eps), kind, self.coefficients(t, xf)).to(x.dtype)

    def x0(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The clean-data estimate ``x0(x_t, t)`` (first part of :meth:`x0_eps`)."""
        return self.x0_eps(x, t, **cond)[0]

    def eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The noise estimate ``eps(x_t, t)`` (second part of :meth:`x0_eps`)."""
        return self.x0_eps(x, t, **cond)[1]

    def velocity(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """``dx_t/dt`` of the probability-flow ODE for this path (the flow-matching velocity)."""
        return self.predict("velocity", x, t, **cond)

    def score(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The score ``grad log p_t(x_t) = -eps / sigma(t)`` (zero where ``sigma = 0``)."""
        return self.predict("score", x, t, **cond)


class Denoiser(DenoiserBase):
    """Wrap ``fn(x, t, **cond) -> Tensor`` predicting ``prediction`` under ``schedule``.

    Args:
        fn: the network; called with ``t`` as a tensor of shape ``(B,)`` in [0, 1] (float32, or ``x``'s
            dtype when that is float64).
        schedule: a :class:`~diffcore.paths.schedules.Schedule` or a registered name (``"vp-cosine"``, ...).
        prediction: what ``fn`` predicts: ``eps``, ``x0``, ``v``, ``velocity`` or ``score``.
    """

    def __init__(self, fn: NetworkFn, schedule: Schedule | str, prediction: Prediction = "eps") -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable network fn(x, t, **cond), got {type(fn).__name__}")
        self.fn = fn
        self.schedule = get_schedule(schedule) if isinstance(schedule, str) else schedule
        if not isinstance(self.schedule, Schedule):
            raise TypeError(
                f"schedule: expected a Schedule or a registered name, got {type(schedule).__name__}"
            )
        self.prediction: Prediction = check_prediction(prediction)
        self._time_tensors: dict[tuple[float, int, torch.device, torch.dtype], Tensor] = {}

    def estimate(self, x: Tensor, t: float, **cond: Any) -> Estimate:
        """The raw network output at the python-float time ``t``, with the affine map of its parameterisation."""
        check_time(t)
        t = float(t)
        c = scalar_coefficients(self.schedule, t)
        return Estimate(x, self.raw(x, t, **cond), affine_x0_eps(self.prediction, c), c, t)

    def time_tensor(self, t: float | Tensor, x: Tensor) -> Tensor:
        """``t`` as a ``(B,)`` tensor on ``x``'s device, the form the network contract asks for.

        The tensors of python-float times are kept (up to :data:`TIME_TENSORS_KEPT`, never modified), so a
        sampler that asks again for the same grid time, in this call or the next, launches no fill kernel for
        it; none is kept while a CUDA graph is captured or under ``torch.inference_mode``."""
        dtype = _time_dtype(x)
        if isinstance(t, Tensor):
            check_time(t)  # CPU tensors only: a CUDA tensor's values are not read (no synchronisation)
            if t.ndim == 0:
                return t.to(device=x.device, dtype=dtype).expand(x.shape[0])
            if t.shape != (x.shape[0],):
                raise ValueError(
                    f"t: expected a float or a tensor of shape ({x.shape[0]},), got {tuple(t.shape)}"
                )
            return t.to(device=x.device, dtype=dtype)
        key = (float(t), x.shape[0], x.device, dtype)
        kept = self._time_tensors.get(key)
        if kept is not None:
            return kept
        check_time(t)
        tensor = torch.full((x.shape[0],), float(t), device=x.device, dtype=dtype)
        capturing = x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if not capturing and not torch.is_inference_mode_enabled():
            if len(self._time_tensors) >= TIME_TENSORS_KEPT:
                self._time_tensors.pop(next(iter(self._time_tensors)))  # the oldest
            self._time_tensors[key] = tensor
        return tensor

    def raw(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The network output itself (of kind ``self.prediction``).

        ``x``: a floating-point tensor ``(B, ...)``; ``t``: a python float in [0, 1] or a ``(B,)`` tensor."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
            raise TypeError(
                f"x: expected a floating-point tensor (B, ...), got "
                f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}"
                f"{' of shape ' + str(tuple(x.shape)) if isinstance(x, Tensor) else ''}"
            )
        out = self.fn(x, self.time_tensor(t, x), **cond)
        if out.shape != x.shape:
            raise ValueError(
                f"network output: expected shape {tuple(x.shape)} (that of x), got {tuple(out.shape)}"
            )
        return out.to(x.dtype)

    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        out = self.raw(x, t, **cond)
        xf = _upcast(x)  # conversions divide by alpha or sigma: do them in float32 at least
        x0, eps = to_x0_eps(_upcast(out), self.prediction, xf, self.coefficients(t, xf))
        return x0.to(x.dtype), eps.to(x.dtype)

    def __repr__(self) -> str:
        return f"Denoiser(schedule={self.schedule!r}, prediction={self.prediction!r})"
