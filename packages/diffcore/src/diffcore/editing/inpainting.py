"""Inverse problems without retraining: inpainting, colorization and SDEdit with any trained denoiser.

Known measurements ``y = A x`` of a linear operator with an "insert" map are enforced during the reverse
process (the replacement method of Song et al. 2021, App. I.2, and RePaint's resampling with jumps,
Lugmayr et al. 2022, Algorithm 1). Everything works on tensors of any shape ``(B, ...)``: images, audio,
time series, latents.

- :class:`Mask` — inpainting / outpainting / time-series imputation: ``A x = m * x`` for a 0/1 mask ``m``.
- :class:`ChannelMean` — colorization: ``A x`` = the mean over a channel axis (the gray image); the other
  (chroma) directions are generated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling import grids as grids_mod
from diffcore.sampling.sample import sample
from diffcore.sampling.steps import GridPoint, ddim_step, grid_points, randn, renoise


class Measurement(Protocol):
    """A linear measurement with its "insert" map: ``measure(x)`` gives ``A x``; ``insert(x, y)`` returns
    ``x`` with its measured part replaced by ``y`` (so ``measure(insert(x, y)) = y``)."""

    def measure(self, x: Tensor) -> Tensor:
        """``A x``: the measured part of ``x``."""

    def insert(self, x: Tensor, y: Tensor) -> Tensor:
        """``x`` with its measured part replaced by ``y``, so that ``measure(insert(x, y)) = y``."""


@dataclass
class Mask:
    """Known entries where ``mask == 1`` (broadcastable to the data, e.g. (B, 1, H, W) for all channels)."""

    mask: Tensor

    def __post_init__(self) -> None:
        m = self.mask
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask: expected values 0 (unknown) or 1 (known)")

    def measure(self, x: Tensor) -> Tensor:
        """``mask * x``: the known entries (zero elsewhere)."""
        return x * self.mask.to(x.dtype)

    def insert(self, x: Tensor, y: Tensor) -> Tensor:
        """``mask * y + (1 - mask) * x``: the known entries from ``y``, the rest from ``x``."""
        m = self.mask.to(x.dtype)
        return m * y + (1 - m) * x


@dataclass
class ChannelMean:
    """The mean over axis ``dim`` (the luminance of RGB in equal weights); colorization generates the rest."""

    dim: int = 1

    def measure(self, x: Tensor) -> Tensor:
        """The mean of ``x`` over axis ``dim`` (kept, size 1)."""
        return x.mean(dim=self.dim, keepdim=True)

    def insert(self, x: Tensor, y: Tensor) -> Tensor:
        """``x`` shifted so that its mean over ``dim`` equals ``y`` (the deviations from the mean kept)."""
        return x - x.mean(dim=self.dim, keepdim=True) + y


def _noised_measurement(op: Measurement, y: Tensor, p: GridPoint, like: Tensor, generator) -> Tensor:
    """``A x_t`` for ``x_t ~ q(x_t | x_0)`` with ``A x_0 = y``: ``alpha y + sigma A eps`` (A is linear)."""
    return p.alpha * y + p.sigma * op.measure(randn(like, generator))


def solve(
    denoiser: DenoiserBase,
    measurement: Measurement,
    y: Tensor,
    noise: Tensor,
    steps: int = 50,
    *,
    grid: str | Tensor = "uniform",
    eta: float = 1.0,
    resample: int = 1,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ``x`` with ``A x = y`` by replacement, optionally with RePaint resampling.

    Args:
        measurement: the operator (:class:`Mask`, :class:`ChannelMean`, ...); ``y`` its value on the data,
            of the shape ``measurement.measure(x)`` returns.
        noise: standard normal ``(B, ...)``, the shape of the samples.
        eta: DDIM stochasticity of each reverse step (1 = DDPM posterior, as in RePaint).
        resample: RePaint's ``U``: each interval is redone ``resample`` times, re-noising the merged state
            back up with the forward transition in between (jump length 1), which harmonises the generated
            region with the known one.

    Returns:
        samples whose measured part equals ``y`` exactly.
    """
    if resample < 1:
        raise ValueError(f"resample: expected >= 1, got {resample}")
    cond = cond or {}
    points = grid_points(denoiser.schedule, grids_mod.resolve(grid, denoiser.schedule, steps))
    x = points[0].sigma * noise + points[0].alpha * measurement.insert(torch.zeros_like(noise), y)
    for cur, nxt in itertools.pairwise(points):
        for u in range(resample):
            x_next = ddim_step(denoiser.estimate(x, cur.t, **cond), cur, nxt, eta, generator)
            known = y if nxt.is_data else _noised_measurement(measurement, y, nxt, x, generator)
            x_next = measurement.insert(x_next, known)
            if u < resample - 1 and not nxt.is_data:
                x = renoise(x_next, nxt, cur, randn(x_next, generator))  # back up to t: q(x_t | x_s)
            else:
                x = x_next
    return measurement.insert(x, y)


def inpaint(
    denoiser: DenoiserBase, known: Tensor, mask: Tensor, noise: Tensor, steps: int = 50, **kw: Any
) -> Tensor:
    """Fill the entries where ``mask == 0`` consistently with ``known`` where ``mask == 1`` (outpainting is the
    same with the mask inverted). ``kw`` as in :func:`solve` (``resample=`` for RePaint)."""
    op = Mask(mask)
    return solve(denoiser, op, op.measure(known), noise, steps, **kw)


def colorize(
    denoiser: DenoiserBase, gray: Tensor, noise: Tensor, steps: int = 50, dim: int = 1, **kw: Any
) -> Tensor:
    """Colour images whose channel mean is ``gray`` ((B, 1, ...) with the channel axis ``dim``)."""
    return solve(denoiser, ChannelMean(dim), gray, noise, steps, **kw)


def sdedit(
    denoiser: DenoiserBase,
    x_start: Tensor,
    strength: float,
    noise: Tensor,
    steps: int = 50,
    sampler: str = "ddim",
    **kw: Any,
) -> Tensor:
    """SDEdit (Meng et al. 2022): noise ``x_start`` to ``t0 = strength`` and run the reverse process from
    there; ``strength`` near 0 keeps the input, near 1 ignores it. ``steps`` counts steps over [0, t0]."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength: expected in [0, 1], got {strength}")
    if strength == 0.0:
        return x_start.clone()
    return sample(denoiser, noise, sampler=sampler, steps=steps, t_start=strength, x_start=x_start, **kw)
