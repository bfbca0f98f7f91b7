"""``Denoiser``: a network together with its schedule and parameterisation.

Samplers, guidance and likelihood see only this interface: ``x0_eps(x, t, **cond)`` returns the
data and noise estimates ``(x_0, eps)`` in one network call, and ``x0``, ``eps``, ``v``, ``velocity``,
``score`` are derived from it through :mod:`diffcore.paths.predictions`.

Fast samplers use the lower-level pair ``output(x, t)`` (the estimate of kind ``output_kind``: the raw
network output for a plain :class:`Denoiser`, ``x0`` for wrappers) and ``output_affine(t)`` (python-float
coefficients of ``(x_0, eps)`` as affine functions of ``(x, output)``), so the conversion folds into the
sampler's own update; ``network_times`` gives the network's time tensors of a whole grid at once.

``t`` is a python float (one time for the whole batch: what samplers pass, no host-device sync) or a
tensor of shape ``(B,)``; ``t = 0`` is data, ``t = 1`` noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
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
from diffcore.paths.schedules import Schedule, memoise_per_schedule
from diffcore.paths.schedules import get as get_schedule

NetworkFn = Callable[..., Tensor]


@memoise_per_schedule(maxsize=8192)
def scalar_coefficients(schedule: Schedule, t: float) -> PathCoefficients:
    """Python-float path coefficients of ``schedule`` at time ``t``, memoised: a sampler asks for the same
    few grid times at every network call, and evaluating a schedule on the host costs far more than a
    step's own arithmetic (a discrete table: ~20 small tensor ops)."""
    c = PathCoefficients.at(schedule, torch.tensor(t, dtype=torch.float64), 0)
    return PathCoefficients(*(float(v) for v in (c.alpha, c.sigma, c.d_alpha, c.d_sigma)))


def _time_dtype(x: Tensor) -> torch.dtype:
    """The network's time dtype: float64 for float64 states, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _upcast(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class DenoiserBase(ABC):
    """What every denoiser (plain or guided) provides. Subclasses implement :meth:`x0_eps`."""

    schedule: Schedule

    @abstractmethod
    def x0_eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> tuple[Tensor, Tensor]:
        """``(E[x0 | x_t], E[eps | x_t])`` at ``(x, t)`` from one network evaluation."""

    def coefficients(self, t: float | Tensor, x: Tensor) -> PathCoefficients:
        """Path coefficients at ``t`` broadcastable against ``x``, computed in float64.

        A python float ``t`` gives python-float coefficients, evaluated on the CPU: no device
        synchronisation and nothing that stops a CUDA graph capture. A ``(B,)`` tensor gives
        ``(B, 1, ...)`` tensors in ``x``'s dtype."""
        if isinstance(t, Tensor) and t.ndim == 1:
            return PathCoefficients.at(self.schedule, t.to(torch.float64), x.ndim, x.dtype)
        return scalar_coefficients(self.schedule, float(t))

    @property
    def output_kind(self) -> Prediction:
        """The kind of :meth:`output`: ``x0`` unless a subclass returns something cheaper."""
        return "x0"

    def output(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The estimate of kind :attr:`output_kind` at ``(x, t)`` from one network evaluation, ``(B, ...)``
        in ``x``'s dtype; ``t`` is a float or an entry of :meth:`network_times`."""
        return self.x0_eps(x, t, **cond)[0]

    def output_affine(self, t: float) -> AffineX0Eps:
        """Python-float ``(x_0, eps)`` as affine functions of ``(x, output(x, t))`` at the time ``t``."""
        return affine_x0_eps(self.output_kind, scalar_coefficients(self.schedule, float(t)))

    def network_times(self, times: Sequence[float], x: Tensor) -> list[float] | list[Tensor]:
        """What to pass as ``t`` to :meth:`output` for each of ``times`` (python floats here; a plain
        :class:`Denoiser` returns its network's time tensors, built once for the whole grid)."""
        return [float(t) for t in times]

    def predict(self, kind: Prediction, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The estimate of kind ``kind`` (eps, x0, v, velocity or score) at ``(x, t)``."""
        check_prediction(kind)
        x0, eps = self.x0_eps(x, t, **cond)
        xf = _upcast(x)
        return from_x0_eps(_upcast(x0), _upcast(eps), kind, self.coefficients(t, xf)).to(x.dtype)

    def x0(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        return self.x0_eps(x, t, **cond)[0]

    def eps(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        return self.x0_eps(x, t, **cond)[1]

    def v(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        return self.predict("v", x, t, **cond)

    def velocity(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """``dx_t/dt`` of the probability-flow ODE for this path (the flow-matching velocity)."""
        return self.predict("velocity", x, t, **cond)

    def score(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
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

    @property
    def output_kind(self) -> Prediction:
        """The network's own parameterisation: :meth:`output` is the raw network output."""
        return self.prediction

    def output(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        return self.raw(x, t, **cond)

    def network_times(self, times: Sequence[float], x: Tensor) -> list[Tensor]:
        """The ``(B,)`` network time tensors of every time in ``times``, built at once: one asynchronous
        copy from pinned host memory and one expand on CUDA (no per-step fill kernel, no synchronisation).
        Under CUDA-graph capture, where a copy from host memory cannot be recorded, one fill per time."""
        dtype, batch = _time_dtype(x), x.shape[0]
        if x.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return [torch.full((batch,), float(t), device=x.device, dtype=dtype) for t in times]
        pinned = x.device.type == "cuda"
        table = torch.tensor([float(t) for t in times], dtype=dtype, pin_memory=pinned)
        table = table.to(x.device, non_blocking=pinned)
        return list(table[:, None].expand(len(times), batch).contiguous().unbind(0))

    def time_tensor(self, t: float | Tensor, x: Tensor) -> Tensor:
        """``t`` as a ``(B,)`` tensor on ``x``'s device, the form the network contract asks for."""
        dtype = _time_dtype(x)
        if isinstance(t, Tensor):
            if t.ndim == 0:
                return t.to(device=x.device, dtype=dtype).expand(x.shape[0])
            if t.shape != (x.shape[0],):
                raise ValueError(
                    f"t: expected a float or a tensor of shape ({x.shape[0]},), got {tuple(t.shape)}"
                )
            return t.to(device=x.device, dtype=dtype)
        return torch.full((x.shape[0],), float(t), device=x.device, dtype=dtype)

    def raw(self, x: Tensor, t: float | Tensor, **cond: Any) -> Tensor:
        """The network output itself (of kind ``self.prediction``)."""
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
