"""Time grids for sampling, separate from samplers (k-diffusion's ``get_sigmas_*`` habit).

A grid is a float64 CPU tensor of ``steps + 1`` times, strictly decreasing from ``t_start`` to
``t_end`` (``t = 0`` is data). Grid functions share one signature::

    grid_fn(schedule, steps, t_start=1.0, t_end=0.0, **options) -> Tensor

Registered grids:

- ``uniform``: equally spaced in ``t``;
- ``log-snr``: equally spaced in ``lambda = log(alpha^2 / sigma^2)`` (DPM-Solver's "logSNR" steps,
  Lu et al. 2022, Sec. 3.3);
- ``karras``: Karras et al. 2022, Eq. 5, ``rho = 7`` spacing of the data-unit noise level
  ``sigma / alpha``;
- ``trailing``, ``leading``, ``linspace``: the timestep spacings of a ``T``-step discrete schedule
  compared by Lin et al. 2024, Table 2 (diffusers' ``timestep_spacing``), with step ``i`` at ``t = i / T``.

Ends with infinite log-SNR: an end at ``alpha = 0`` (``t = 1`` of rectified flow, cosine or zero-terminal-SNR
schedules) is kept exactly, its log-SNR replaced by that of ``t_max`` for the spacing; an end at
``sigma = 0`` (``t = 0`` of VP, EDM, rectified flow) cannot be reached in log-SNR steps, so the spacing
stops at ``t_min`` (or ``sigma_min``) and the exact ``t = 0`` is appended as the last point (the sampler's
final denoising step).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule
from diffcore.registry import Registry

GridFn = Callable[..., Tensor]
GRIDS: Registry[GridFn] = Registry("grid")


def register(name: str, *, replace: bool = False) -> Callable[[GridFn], GridFn]:
    """Decorator registering a grid function under ``name``."""
    return GRIDS.register(name, replace=replace)


def available() -> list[str]:
    """Names of every registered grid."""
    return GRIDS.names()


def check_grid(grid: Tensor) -> Tensor:
    """Validate a user-given grid: 1-D, at least two points, in [0, 1], strictly decreasing."""
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()
    if grid.ndim != 1 or len(grid) < 2:
        raise ValueError(f"grid: expected a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
    times = grid.tolist()  # checked on the host in python: cheaper than a handful of tensor ops per call
    if not all(0.0 <= t <= 1.0 for t in times):
        raise ValueError("grid: expected times in [0, 1] (t = 0 is data)")
    if not all(b < a for a, b in itertools.pairwise(times)):
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
    return check_grid(GRIDS.get(name)(schedule, steps, t_start, t_end, **options))


def resolve(
    grid: str | Tensor, schedule: Schedule, steps: int, t_start: float = 1.0, t_end: float = 0.0, **options
) -> Tensor:
    """``grid`` itself when it is a tensor (checked; ``steps`` and the ends are then ignored), else the
    registered grid of that name (:func:`make`)."""
    if isinstance(grid, Tensor):
        return check_grid(grid)
    return make(grid, schedule, steps, t_start, t_end, **options)


@register("uniform")
def uniform(schedule: Schedule, steps: int, t_start: float = 1.0, t_end: float = 0.0) -> Tensor:
    """Equally spaced in ``t``."""
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


@register("halving")
def halving(schedule: Schedule, steps: int, t_start: float = 1.0, t_end: float = 0.0) -> Tensor:
    """``t_end + (t_start - t_end) 2^-i`` for ``i < steps``, then ``t_end``: each step after the first starts at
    half the previous step's time. The grids of different step counts are nested (the ``k``-step grid's first
    ``k`` times open every longer one), so a multistep one-step generator's extra steps only refine at lower
    noise (the intermediate times of multistep consistency sampling are a free choice, Song et al. 2023,
    Sec. 6)."""
    head = t_end + (t_start - t_end) * 0.5 ** torch.arange(steps, dtype=torch.float64)
    return torch.cat([head, torch.tensor([t_end], dtype=torch.float64)])


def log_snr_at(schedule: Schedule, t: float) -> float:
    """``log(alpha^2 / sigma^2)`` of ``schedule`` at the python-float time ``t`` (float64, on the host)."""
    return float(schedule.log_snr(torch.tensor(t, dtype=torch.float64)))


def time_at_log_snr(schedule: Schedule, lam: float) -> float:
    """The python-float time where ``schedule``'s log-SNR ``log(alpha^2 / sigma^2)`` is ``lam`` (on the host)."""
    return float(schedule.t_from_log_snr(torch.tensor(lam, dtype=torch.float64)))


def _check_clamp(t_min: float, t_max: float, t_start: float, t_end: float) -> None:
    if not 0 < t_min < 1 or not 0 < t_max < 1:
        raise ValueError(f"t_min, t_max: expected both in (0, 1), got {t_min}, {t_max}")
    if not t_end < t_max and t_min < t_start:
        raise ValueError(
            f"t_min, t_max: expected t_end < t_max and t_min < t_start, got t_min={t_min}, t_max={t_max} "
            f"for t_start={t_start}, t_end={t_end}"
        )


def _spaced_in_log_snr(
    schedule: Schedule,
    steps: int,
    t_start: float,
    t_end: float,
    lam_hi: float | None,
    lam_lo: float | None,
    spacing: Callable[[float, float, int], Tensor],
) -> Tensor:
    """Times whose log-SNRs are ``spacing(lam_start, lam_end, n)`` (increasing in lambda).

    ``lam_hi``/``lam_lo`` replace an infinite log-SNR at ``t_start``/``t_end`` (see the module docstring);
    a replaced ``t_end`` is appended after the ``steps`` spaced points, the ends are kept exactly."""
    lam_start, lam_end = log_snr_at(schedule, t_start), log_snr_at(schedule, t_end)
    append_end = math.isinf(lam_end)
    if math.isinf(lam_start):
        lam_start = float(lam_hi)
    if append_end:
        lam_end = float(lam_lo)
    if not lam_start < lam_end:
        raise ValueError(
            f"t_min, t_max: the clamped log-SNR range [{lam_start:.4g}, {lam_end:.4g}] is empty; "
            "expected t_min below and t_max above every interior time"
        )
    n = steps if append_end else steps + 1
    lams = spacing(lam_start, lam_end, n)
    times = schedule.t_from_log_snr(lams).to(torch.float64).reshape(-1)
    times[0] = t_start
    if append_end:
        times = torch.cat([times, torch.tensor([t_end], dtype=torch.float64)])
    else:
        times[-1] = t_end
    return times


@register("log-snr")
def log_snr(
    schedule: Schedule,
    steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    t_min: float = 1e-3,
    t_max: float = 1.0 - 1e-3,
) -> Tensor:
    """Equally spaced in log-SNR ``lambda(t)`` (Lu et al. 2022, DPM-Solver, Sec. 3.3).

    Args:
        t_min: where the spacing stops when ``t_end`` has infinite log-SNR (``sigma = 0``); the exact
            ``t_end`` is then appended.
        t_max: whose log-SNR replaces an infinite one at ``t_start`` (``alpha = 0``) for the spacing.
    """
    _check_clamp(t_min, t_max, t_start, t_end)

    def spacing(lo: float, hi: float, n: int) -> Tensor:
        return torch.linspace(lo, hi, n, dtype=torch.float64)

    return _spaced_in_log_snr(
        schedule, steps, t_start, t_end, log_snr_at(schedule, t_max), log_snr_at(schedule, t_min), spacing
    )


def karras_sigmas(num_points: int, s_min: float = 0.002, s_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """``num_points`` increasing data-unit noise levels ``s = sigma / alpha`` with Karras et al.'s ``rho``
    spacing (2022, Eq. 5): ``s_i = (s_min^(1/rho) + i/(N-1) (s_max^(1/rho) - s_min^(1/rho)))^rho``, float64.

    The ``karras`` grid runs them from ``s_max`` down to ``s_min``; consistency models pair neighbours
    (Song et al. 2023, Sec. 5)."""
    if num_points < 2:
        raise ValueError(
            f"num_points: expected >= 2 (a discretisation has at least one interval), got {num_points}"
        )
    if not 0 < s_min < s_max:
        raise ValueError(f"s_min, s_max: expected 0 < s_min < s_max, got {s_min}, {s_max}")
    if not rho > 0:
        raise ValueError(f"rho: expected > 0, got {rho!r}")
    ramp = torch.linspace(0, 1, num_points, dtype=torch.float64)
    return (s_min ** (1 / rho) + ramp * (s_max ** (1 / rho) - s_min ** (1 / rho))) ** rho


@register("karras")
def karras(
    schedule: Schedule,
    steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    t_min: float = 1e-3,
    t_max: float = 1.0 - 1e-3,
) -> Tensor:
    """Karras et al. 2022, Eq. 5: the data-unit noise levels ``s = sigma / alpha = exp(-lambda / 2)`` of
    :func:`karras_sigmas` from ``s_max`` down to ``s_min``, mapped back to ``t`` through
    ``schedule.t_from_log_snr``. On the EDM path (``sigma = 80 t``) this is EDM's grid.

    Args:
        rho: the spacing exponent (7 in EDM; 1 is uniform in ``s``, large values approach log-SNR spacing).
        sigma_min: data-unit noise level replacing a noise-free ``t_end`` (default: that at ``t_min``;
            EDM uses 0.002). The exact ``t_end`` is appended after it.
        sigma_max: data-unit noise level replacing an infinite one at ``t_start`` (default: that at ``t_max``).
    """
    if not rho > 0:
        raise ValueError(f"rho: expected > 0, got {rho!r}")
    _check_clamp(t_min, t_max, t_start, t_end)
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}: expected > 0, got {value!r}")
    lam_hi = -2 * math.log(sigma_max) if sigma_max is not None else log_snr_at(schedule, t_max)
    lam_lo = -2 * math.log(sigma_min) if sigma_min is not None else log_snr_at(schedule, t_min)

    def spacing(lo: float, hi: float, n: int) -> Tensor:
        if n == 1:  # one point: the start alone (the exact t_end is appended after it)
            return torch.tensor([lo], dtype=torch.float64)
        s = karras_sigmas(n, math.exp(-0.5 * hi), math.exp(-0.5 * lo), rho).flip(0)
        return -2 * torch.log(s)

    return _spaced_in_log_snr(schedule, steps, t_start, t_end, lam_hi, lam_lo, spacing)


def _train_steps(schedule: Schedule, num_train_steps: int | None) -> int:
    """``T``: the option, else the discrete schedule's table length, else 1000."""
    T = num_train_steps if num_train_steps is not None else getattr(schedule, "num_steps", 1000)
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"num_train_steps: expected an integer >= 1, got {T!r}")
    return T


@register("trailing")
def trailing(
    schedule: Schedule,
    steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    num_train_steps: int | None = None,
) -> Tensor:
    """Lin et al. 2024, Table 2, "trailing": steps ``round(T - i T / steps)`` of a ``T``-step table, i.e.
    ``t_i = round(T (t_start - i (t_start - t_end) / steps)) / T`` for ``i < steps``, then ``t_end``.
    Starts exactly at ``t_start`` (the last training step), unlike "leading".

    Args:
        num_train_steps: ``T`` (default: the table length of a discrete schedule, else 1000).
    """
    T = _train_steps(schedule, num_train_steps)
    i = torch.arange(steps, dtype=torch.float64)
    k = torch.round(T * (t_start - i * (t_start - t_end) / steps))
    times = torch.cat([k / T, torch.tensor([t_end], dtype=torch.float64)])
    times[0] = t_start
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError(
            f"steps: expected at most {math.floor((t_start - t_end) * T)} steps for the trailing grid "
            f"of a {T}-step schedule between t={t_start} and t={t_end}, got {steps}"
        )
    return times


def _full_range_only(name: str, t_start: float, t_end: float) -> None:
    if t_start != 1.0 or t_end != 0.0:
        raise ValueError(
            f"t_start, t_end: the {name} grid covers the whole table, expected 1.0 and 0.0, got {t_start}, {t_end}"
        )


@register("leading")
def leading(
    schedule: Schedule,
    steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    num_train_steps: int | None = None,
    steps_offset: int = 0,
) -> Tensor:
    """Lin et al. 2024, Table 2, "leading" (DDIM's and Stable Diffusion's original spacing): 0-based steps
    ``k_i = (steps - 1 - i) * (T // steps) + steps_offset``, at ``t = (k_i + 1) / T``, then ``t = 0``.
    It does not start at ``t = 1`` (the flaw Lin et al. point out); kept for parity with old pipelines.
    """
    _full_range_only("leading", t_start, t_end)
    T = _train_steps(schedule, num_train_steps)
    ratio = T // steps
    if ratio < 1 or (steps - 1) * ratio + steps_offset >= T or steps_offset < 0:
        raise ValueError(
            f"steps, steps_offset: expected steps <= {T} and 0 <= steps_offset < {T - (steps - 1) * max(ratio, 1)}, "
            f"got {steps}, {steps_offset}"
        )
    k = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * ratio + steps_offset
    return torch.cat([(k + 1) / T, torch.zeros(1, dtype=torch.float64)])


@register("linspace")
def linspace(
    schedule: Schedule,
    steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    num_train_steps: int | None = None,
) -> Tensor:
    """Lin et al. 2024, Table 2, "linspace": 0-based steps ``round(linspace(T - 1, 0, steps))``, at
    ``t = (k + 1) / T``, then ``t = 0``."""
    _full_range_only("linspace", t_start, t_end)
    T = _train_steps(schedule, num_train_steps)
    if steps > T:
        raise ValueError(
            f"steps: expected at most {T} for the linspace grid of a {T}-step schedule, got {steps}"
        )
    k = torch.round(torch.linspace(T - 1, 0, steps, dtype=torch.float64))
    return torch.cat([(k + 1) / T, torch.zeros(1, dtype=torch.float64)])
