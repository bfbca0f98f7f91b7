"""Time grids optimised for one model, one sampler and one step budget.

Fixed grids (uniform, log-SNR, Karras) are guesses; at 5-10 network evaluations the placement of the
steps decides most of the error. Following the idea of "Align Your Steps" (Sabour et al. 2024) and the
optimal-stepsize papers (Xue et al. 2024, "Accelerating Diffusion Sampling with Optimized Time Steps";
Chen et al. 2025, "Optimal Stepsize for Diffusion Sampling"), the grid here minimises the sampler's own
global error on a batch of sample trajectories::

    L(grid) = mean_b || S(grid, z_b) - Phi(z_b) ||^2

where ``S`` is the chosen (deterministic) sampler started from noise ``z_b`` and ``Phi`` the flow map of the
probability-flow ODE, computed once with a fine log-SNR grid and the fourth-order UniPC. With
``objective="sliced-wasserstein"`` the loss is instead the squared sliced 2-Wasserstein distance between
the sets ``{S(grid, z_b)}`` and ``{Phi(z_b)}`` (Rabin et al. 2011): it scores the sampled distribution, not
each trajectory, so a grid may trade a trajectory's error for a better-placed set of end points (what a
distributional metric rewards). The search is
coordinate descent over the interior times, each moved in log-SNR between its neighbours (a coarse scan,
then golden-section refinement), so the grid stays strictly decreasing. It starts from the best of the
fixed grids and never accepts a worse grid, so on the optimisation batch it is at least as good as each.

The result is a plain float64 tensor: save it (``torch.save``) and pass it to
``diffcore.sample(..., grid=tensor)``. It is deliberately not a registered grid name: a named grid is a
function of the schedule alone (:mod:`~diffcore.sampling.grids`, below the samplers), while this search
depends on a model and a sampler and runs that sampler hundreds of times, so it sits above
:func:`~diffcore.sampling.sample.sample` and is run once, not on every sampling call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.schedules import Schedule
from diffcore.sampling import grids
from diffcore.sampling.registry import get as get_sampler
from diffcore.sampling.sample import sample

GOLDEN = (math.sqrt(5) - 1) / 2
FIXED_GRIDS = ("uniform", "log-snr", "karras")


def reference_solution(
    denoiser: DenoiserBase,
    noise: Tensor,
    t_start: float = 1.0,
    t_end: float = 0.0,
    steps: int = 200,
    cond: dict[str, Any] | None = None,
) -> Tensor:
    """The probability-flow ODE's end point from ``sigma(t_start) * noise``: UniPC (order 3 with corrector,
    fourth order) on ``steps`` log-SNR-spaced intervals. ``noise``: ``(B, ...)``; returns ``(B, ...)``."""
    grid = grids.make("log-snr", denoiser.schedule, steps, t_start, t_end, t_min=1e-4)
    return sample(denoiser, noise, "unipc", steps, grid=grid, cond=cond, order=3)


OBJECTIVES = ("mse", "sliced-wasserstein")


def check_objective(objective: str) -> str:
    """Return ``objective`` if it is one of :data:`OBJECTIVES`, else raise a clear ValueError."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    return objective


def objective_value(objective: str, out: Tensor, reference: Tensor, projections: int = 128) -> float:
    """The grid's loss given the sampler's end points ``out`` and the ODE's ``reference`` (both ``(B, ...)``).

    ``"mse"``: ``mean_b ||out_b - reference_b||^2``. ``"sliced-wasserstein"``: the squared sliced
    2-Wasserstein distance between the two sets of flattened end points over ``projections`` fixed random
    directions (Rabin et al. 2011): sort the projections of each set and compare them in order."""
    diff_sq = ((out - reference).double() ** 2).flatten(1).sum(1)
    if objective == "mse":
        return float(diff_sq.mean())
    a, b = out.double().flatten(1), reference.double().flatten(1)
    theta = torch.randn(
        a.shape[1], projections, generator=torch.Generator().manual_seed(1234), dtype=torch.float64
    )
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, pb = torch.sort(a @ theta, dim=0).values, torch.sort(b @ theta, dim=0).values
    return float(((pa - pb) ** 2).mean())


def _bounds(schedule: Schedule, upper: float, lower: float, t_floor: float) -> tuple[float, float]:
    """Log-SNR interval strictly between two neighbouring times (infinite ends replaced by those of
    ``1 - t_floor`` and ``t_floor``)."""
    lo = grids.log_snr_at(schedule, upper)
    hi = grids.log_snr_at(schedule, lower)
    if math.isinf(lo):
        lo = grids.log_snr_at(schedule, min(1.0 - t_floor, upper - t_floor))
    if math.isinf(hi):
        hi = grids.log_snr_at(schedule, max(t_floor, lower + t_floor))
    return lo, hi


def _line_search(
    loss_at: Callable[[float], float], current: float, best: float, scan: int, refine: int
) -> tuple[float, float]:
    """Minimise ``loss_at(f)`` over ``f`` in (0, 1): a scan of ``scan`` points, then golden-section steps
    around the best; returns the best ``(f, loss)`` seen, starting from ``(current, best)``."""
    f_best, l_best = current, best
    for f in (k / (scan + 1) for k in range(1, scan + 1)):
        value = loss_at(f)
        if value < l_best:
            f_best, l_best = f, value
    width = 1.0 / (scan + 1)
    a, b = max(f_best - width, 1e-3), min(f_best + width, 1 - 1e-3)
    for _ in range(refine):
        c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
        lc, ld = loss_at(c), loss_at(d)
        if lc < ld:
            b = d
            if lc < l_best:
                f_best, l_best = c, lc
        else:
            a = c
            if ld < l_best:
                f_best, l_best = d, ld
    return f_best, l_best


def optimize_grid(
    denoiser: DenoiserBase,
    sampler: str,
    steps: int,
    noise_batch: Tensor,
    *,
    t_start: float = 1.0,
    t_end: float = 0.0,
    init: Tensor | str | None = None,
    cond: dict[str, Any] | None = None,
    reference: Tensor | None = None,
    reference_steps: int = 200,
    sweeps: int = 3,
    scan: int = 6,
    refine: int = 6,
    t_floor: float = 1e-4,
    sampler_options: dict[str, Any] | None = None,
    objective: str = "mse",
) -> Tensor:
    """A ``steps``-interval grid minimising ``sampler``'s error against the ODE solution on ``noise_batch``.

    Args:
        denoiser: the model (any schedule / prediction), e.g. an EMA network or an analytic denoiser.
        sampler: a registered deterministic sampler (``"dpmpp_2m"``, ``"unipc"``, ``"heun"``, ...).
        steps: grid intervals (network calls = steps x the sampler's calls per step).
        noise_batch: ``(B, ...)`` standard normal noise; a few hundred samples are enough.
        t_start, t_end: the ends of the grid (kept fixed), ``t = 0`` data.
        init: starting grid (tensor or a registered name); default: the best of uniform, log-SNR, Karras.
        reference: the ODE end points for ``noise_batch`` if already computed (:func:`reference_solution`).
        sweeps, scan, refine: coordinate-descent passes; scan points and golden-section steps per time.
        t_floor: the smallest positive time an interior point may take (and ``1 - t_floor`` the largest).
        sampler_options: options passed to the sampler (``order=``, ``solver_type=`` ...).
        objective: ``"mse"``: mean squared distance to the ODE end point of the same noise (paired);
            ``"sliced-wasserstein"``: sliced W2 between the sampler's and the ODE's end points as sets
            (:func:`objective_value`), which scores the distribution rather than each trajectory.

    Returns:
        float64 CPU tensor of ``steps + 1`` strictly decreasing times from ``t_start`` to ``t_end``.
    """
    spec = get_sampler(sampler)
    if spec.stochastic:
        raise ValueError(f"sampler: expected a deterministic sampler, got the stochastic {sampler!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if not isinstance(noise_batch, Tensor) or noise_batch.ndim < 1:
        raise ValueError("noise_batch: expected a tensor of standard normal noise (B, ...)")
    check_objective(objective)
    schedule = denoiser.schedule
    options = dict(sampler_options or {})
    if reference is None:
        reference = reference_solution(denoiser, noise_batch, t_start, t_end, reference_steps, cond)

    def loss(grid: Tensor) -> float:
        # A candidate grid may diverge: its loss is then NaN / inf and it loses, rather than stopping the search.
        out = sample(
            denoiser, noise_batch, sampler, steps, grid=grid, cond=cond, check_finite="off", **options
        )
        return objective_value(objective, out, reference)

    candidates = [init] if init is not None else list(FIXED_GRIDS)
    best_grid, best = None, math.inf
    for cand in candidates:
        if isinstance(cand, str):
            cand = grids.make(cand, schedule, steps, t_start, t_end)
        cand = grids.check_grid(cand)
        value = loss(cand)
        if value < best:
            best_grid, best = cand.clone(), value
    grid = best_grid
    for _ in range(sweeps):
        before = best
        for i in range(1, steps):
            lo, hi = _bounds(schedule, float(grid[i - 1]), float(grid[i + 1]), t_floor)

            def time_of(f: float, lo: float = lo, hi: float = hi) -> float:
                return grids.time_at_log_snr(schedule, lo + f * (hi - lo))

            def loss_at(f: float, i: int = i, time_of=time_of) -> float:
                t = time_of(f)
                if not float(grid[i + 1]) < t < float(grid[i - 1]):
                    return math.inf
                trial = grid.clone()
                trial[i] = t
                return loss(trial)

            lam_i = grids.log_snr_at(schedule, float(grid[i]))
            current = min(max((lam_i - lo) / (hi - lo), 0.0), 1.0) if math.isfinite(lam_i) else 0.5
            f, value = _line_search(loss_at, current, best, scan, refine)
            if value < best:
                grid[i], best = time_of(f), value
        if best > before * (1 - 1e-3):
            break
    return grids.check_grid(grid)
