"""Time grids for sampling, separate from samplers (k-diffusion's ``get_sigmas_*`` habit).

A grid is a float64 CPU tensor of ``steps + 1`` times, strictly decreasing from ``t_start`` to
``t_end`` (``t = 0`` is data). Grid functions share one signature::

    grid_fn(schedule, steps, t_start=1.0, t_end=0.0, **options) -> Tensor
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffcore.schedules import Schedule

GridFn = Callable[..., Tensor]
_REGISTRY: dict[str, GridFn] = {}


def register(name: str) -> Callable[[GridFn], GridFn]:
    """Decorator registering a grid function under ``name``."""

    def wrap(fn: GridFn) -> GridFn:
        _REGISTRY[name] = fn
        return fn

    return wrap


def available() -> list[str]:
    """Names of every registered grid."""
    return sorted(_REGISTRY)


def check_grid(grid: Tensor) -> Tensor:
    """Validate a user-given grid: 1-D, at least two points, in [0, 1], strictly decreasing."""
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"grid: expected a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
    if bool((grid < 0).any() or (grid > 1).any()):
        raise ValueError("grid: expected times in [0, 1] (t = 0 is data)")
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError("grid: expected strictly decreasing times (from noise towards data)")
    return grid


def make(
    name: str, schedule: Schedule, steps: int, t_start: float = 1.0, t_end: float = 0.0, **options
) -> Tensor:
    """The grid ``name`` with ``steps`` intervals between ``t_start`` and ``t_end``."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if not 0 <= t_end < t_start <= 1:
        raise ValueError(f"t_start, t_end: expected 0 <= t_end < t_start <= 1, got {t_start}, {t_end}")
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"grid: unknown name {name!r}; expected one of {available()}") from None
    return check_grid(fn(schedule, steps, t_start, t_end, **options))


@register("uniform")
def uniform(schedule: Schedule, steps: int, t_start: float = 1.0, t_end: float = 0.0) -> Tensor:
    """Equally spaced in ``t``."""
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)
