"""The stream's denoising steps: a step list (StreamDiffusion's ``t_index_list``) picked from a time grid, and
the per-slot path coefficients the stream batch needs as device tensors.

StreamDiffusion (Kodaira et al. 2023, Sec. 3.2) denoises with a few steps chosen from a longer schedule,
``t_index_list`` indexing a ``num_steps``-step grid (e.g. ``[32, 45]`` of 50 for image-to-image, ``[0]`` of 1
for one-step text-to-image). Here the grid is any registered :mod:`diffcore.sampling.grids` name, so the
stream works on every schedule. Times run from ``t = 1`` (noise) to ``t = 0`` (data); the stream's times
are ``t_0 > t_1 > ... > t_{n-1} > 0`` and every frame ends at ``t = 0``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule
from diffcore.sampling import grids
from diffcore.sampling.steps import GridPoint, grid_points

__all__ = ["SlotCoefficients", "stream_times"]


def stream_times(
    schedule: Schedule,
    t_index_list: Sequence[int],
    num_steps: int,
    grid: str = "trailing",
    t_start: float = 1.0,
) -> tuple[float, ...]:
    """The stream's times ``(t_0, ..., t_{n-1})``: entries ``t_index_list`` of the ``num_steps``-interval grid
    ``grid`` of ``schedule`` from ``t_start`` to 0 (decreasing, all > 0; the final step of every frame lands on
    ``t = 0``).

    Raises:
        ValueError: an empty or non-increasing ``t_index_list``, or an index outside ``[0, num_steps)``.
    """
    idx = [int(i) for i in t_index_list]
    if not idx:
        raise ValueError("t_index_list: expected at least one step index, got an empty list")
    if any(b <= a for a, b in itertools.pairwise(idx)):
        raise ValueError(f"t_index_list: expected strictly increasing step indices, got {list(t_index_list)}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected an integer >= 1, got {num_steps!r}")
    if idx[0] < 0 or idx[-1] >= num_steps:
        raise ValueError(
            f"t_index_list: expected indices in [0, {num_steps - 1}] of the {num_steps}-step grid, got {idx}"
        )
    times = grids.make(grid, schedule, num_steps, t_start=t_start).tolist()
    return tuple(float(times[i]) for i in idx)


@dataclass(frozen=True)
class SlotCoefficients:
    """Path coefficients per slot of a stream batch, as ``(n, 1, ..., 1)`` tensors (one row per slot).

    Slot ``i`` holds a frame at time ``t_i``; its step goes to ``t_{i+1}`` (``t_n = 0``, data).

    Attributes:
        t: ``(n,)`` the slots' times (float32; what the network receives).
        alpha, sigma: ``alpha(t_i)``, ``sigma(t_i)``.
        alpha_next, sigma_next: ``alpha(t_{i+1})``, ``sigma(t_{i+1})`` (the last slot: ``1`` and ``0``, so a step
            rule ``alpha_next x0 + sigma_next z`` returns ``x0`` there, the last-step rule of every sampler).
        points: the grid points ``t_0 .. t_{n-1}, 0`` as python floats.
    """

    t: Tensor
    alpha: Tensor
    sigma: Tensor
    alpha_next: Tensor
    sigma_next: Tensor
    points: tuple[GridPoint, ...]

    @classmethod
    def of(
        cls, schedule: Schedule, times: Sequence[float], ndim: int, device: torch.device, dtype: torch.dtype
    ) -> SlotCoefficients:
        """The coefficients of ``times`` (decreasing, > 0) for states of ``ndim`` dimensions per slot (the
        ``(B, C, H, W)`` of one slot: ``ndim = 4``, giving ``(n, 1, 1, 1, 1)`` tensors)."""
        points = tuple(grid_points(schedule, grids.check_grid(torch.tensor([*times, 0.0]))))
        shape = (-1,) + (1,) * ndim

        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device).reshape(shape)

        now, nxt = points[:-1], points[1:]
        alpha_next = [1.0 if p.is_data else p.alpha for p in nxt]
        sigma_next = [0.0 if p.is_data else p.sigma for p in nxt]
        return cls(
            t=torch.tensor([p.t for p in now], dtype=torch.float32, device=device),
            alpha=column([p.alpha for p in now]),
            sigma=column([p.sigma for p in now]),
            alpha_next=column(alpha_next),
            sigma_next=column(sigma_next),
            points=points,
        )
