"""DPM-Solver and DPM-Solver++: exponential integrators of the probability-flow ODE in ``lambda``.

With ``lambda = log(alpha / sigma)`` (half the log-SNR) the probability-flow ODE has the exact solution
(Lu et al. 2022b, Eq. 9, data-prediction form)::

    x_t = (sigma_t / sigma_s) x_s + sigma_t * int_{lambda_s}^{lambda_t} e^lambda x0(x_lambda, lambda) dlambda

or, in noise-prediction form (Lu et al. 2022, Eq. 3.4),
``x_t = (alpha_t / alpha_s) x_s - alpha_t int e^{-lambda} eps dlambda``. The solvers differ only in how they
approximate the network output inside the integral:

- ``dpm_solver_1/2/3``: single-step DPM-Solver-k in noise prediction (Lu et al. 2022, Algorithms 1-2),
  ``k`` network calls per step at intermediate ``lambda``;
- ``dpmpp_2m`` / ``dpmpp_3m``: multistep DPM-Solver++ in data prediction (Lu et al. 2022b, Algorithm 2,
  and its third-order extension), one network call per step, earlier outputs as a polynomial in ``lambda``;
- ``dpmpp_2m_sde``: the SDE variant of DPM-Solver++(2M) (Lu et al. 2022b, Appendix; k-diffusion /
  diffusers ``sde-dpmsolver++``) with noise strength ``eta``;
- ``dpmpp_2s_ancestral``: DPM-Solver++(2S) with ancestral noise (k-diffusion's ``sample_dpmpp_2s_ancestral``).

Every coefficient is a python float from the CPU grid (no device sync). A step to ``t = 0`` returns the
data estimate; a step from ``alpha = 0`` (rectified flow at ``t = 1``) or to ``sigma = 0`` is first order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, Estimate, weighted_sum
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import (
    GridPoint,
    ddim_step,
    grid_points,
    phi,
    point_at_lambda,
    posterior_std,
    randn,
    step_length,
)

SolverType = Literal["midpoint", "heun"]
D2Weight = Literal["taylor", "diffusers"]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Single-step DPM-Solver-1/2/3 (noise prediction; Lu et al. 2022, Algorithms 1 and 2).
# --------------------------------------------------------------------------------------------


def _intermediate_points(denoiser: DenoiserBase, pts: list[GridPoint], fractions: Sequence[float]) -> list:
    """For each interval with a finite ``h``, the points at ``lambda_s + r h`` for every ``r`` in
    ``fractions``; None for intervals taken at first order. Computed before the loop (CPU only)."""
    out: list[list[GridPoint] | None] = []
    for s, t in itertools.pairwise(pts):
        h = step_length(s, t)
        if not math.isfinite(h) or t.is_data:
            out.append(None)
        else:
            out.append([point_at_lambda(denoiser.schedule, s.lam + r * h) for r in fractions])
    return out


def _dpm_solver_2_step(
    denoiser: DenoiserBase, d: Estimate, s: GridPoint, mid: GridPoint, t: GridPoint, r1: float, cond: dict
) -> Tensor:
    """DPM-Solver-2 (Lu et al. 2022, Algorithm 1): ``u`` = the first-order (DDIM) step to ``lambda_s + r1 h``, then
    ``x_t = alpha_t x0 + sigma_t eps - sigma_t / (2 r1) (e^h - 1) (eps(u) - eps)`` (first part = Eq. 3.7)."""
    h = step_length(s, t)
    eps_u = denoiser.estimate(ddim_step(d, s, mid), mid.t, **cond).eps
    return ddim_step(d, s, t) - (t.sigma / (2 * r1) * math.expm1(h)) * (eps_u - d.eps)


def _dpm_solver_3_step(
    denoiser: DenoiserBase,
    d: Estimate,
    s: GridPoint,
    m1: GridPoint,
    m2: GridPoint,
    t: GridPoint,
    r1: float,
    r2: float,
    cond: dict,
) -> Tensor:
    """DPM-Solver-3 (Lu et al. 2022, Algorithm 2), with the first-order parts written as DDIM steps
    ``alpha x0 + sigma eps`` so that nothing divides by ``alpha_s``."""
    h = step_length(s, t)
    d1 = denoiser.estimate(ddim_step(d, s, m1), m1.t, **cond).eps - d.eps
    c2 = m2.sigma * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1)
    d2 = denoiser.estimate(ddim_step(d, s, m2) - c2 * d1, m2.t, **cond).eps - d.eps
    return ddim_step(d, s, t) - (t.sigma / r2 * (math.expm1(h) / h - 1)) * d2


def _single_step(
    order: int,
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    cond: dict[str, Any],
    callback: Callback | None,
    r1: float,
    r2: float,
) -> Tensor:
    pts = grid_points(denoiser.schedule, grid)
    fractions = {1: [], 2: [r1], 3: [r1, r2]}[order]
    mids = _intermediate_points(denoiser, pts, fractions) if order > 1 else [None] * (len(pts) - 1)
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        d = denoiser.estimate(x, s.t, **cond)
        if t.is_data or mids[i] is None:
            x = ddim_step(d, s, t)  # the data estimate at t = 0, else first order
        elif order == 2:
            x = _dpm_solver_2_step(denoiser, d, s, mids[i][0], t, r1, cond)
        else:
            x = _dpm_solver_3_step(denoiser, d, s, mids[i][0], mids[i][1], t, r1, r2, cond)
        if callback is not None:
            callback(i, t.t, x, d.x0)
    return x


@register(
    "dpm_solver_1",
    nfe_per_step=1,
    description="DPM-Solver-1 (= DDIM), noise prediction (Lu et al. 2022, Eq. 3.7)",
)
def sample_dpm_solver_1(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
) -> Tensor:
    """DPM-Solver-1: the first-order exponential integrator ``x_t = alpha_t x0 + sigma_t eps``.

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase`.
        x: ``(B, ...)`` state at ``grid[0]``.
        grid: float64 CPU times decreasing towards ``t = 0`` (data).
    Returns:
        ``(B, ...)`` samples at ``grid[-1]`` (the data estimate if ``grid[-1] == 0``).
    """
    return _single_step(1, denoiser, x, grid, cond, callback, 0.5, 2 / 3)


@register(
    "dpm_solver_2",
    nfe_per_step=2,
    description="DPM-Solver-2, single-step, noise prediction (Lu et al. 2022, Algorithm 1)",
)
def sample_dpm_solver_2(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
    r1: float = 0.5,
) -> Tensor:
    """DPM-Solver-2 (Lu et al. 2022, Algorithm 1): two network calls per step, the second at
    ``lambda_s + r1 h`` (``r1 = 0.5``: the midpoint method in ``lambda``). Second order.

    Steps from ``alpha = 0`` and the final step to ``t = 0`` use one call (first order / data estimate).
    """
    if not 0 < r1 < 1:
        raise ValueError(f"r1: expected 0 < r1 < 1, got {r1}")
    return _single_step(2, denoiser, x, grid, cond, callback, r1, 2 / 3)


@register(
    "dpm_solver_3",
    nfe_per_step=3,
    description="DPM-Solver-3, single-step, noise prediction (Lu et al. 2022, Algorithm 2)",
)
def sample_dpm_solver_3(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
    r1: float = 1 / 3,
    r2: float = 2 / 3,
) -> Tensor:
    """DPM-Solver-3 (Lu et al. 2022, Algorithm 2): three network calls per step at ``lambda_s``,
    ``lambda_s + r1 h`` and ``lambda_s + r2 h``. Third order for ``r1 = 1/3, r2 = 2/3``.

    Steps from ``alpha = 0`` and the final step to ``t = 0`` use one call (first order / data estimate).
    """
    if not 0 < r1 < r2 < 1:
        raise ValueError(f"r1, r2: expected 0 < r1 < r2 < 1, got {r1}, {r2}")
    return _single_step(3, denoiser, x, grid, cond, callback, r1, r2)


# --------------------------------------------------------------------------------------------
# Multistep DPM-Solver++ (data prediction; Lu et al. 2022b).
# --------------------------------------------------------------------------------------------


def multistep_weights(
    order: int,
    h: float,
    h_prev: Sequence[float],
    solver_type: SolverType = "midpoint",
    d2_weight: D2Weight = "taylor",
) -> list[float]:
    """Weights ``w_j`` of the DPM-Solver++(kM) update ``x_t = (sigma_t / sigma_s) x_s + alpha_t sum_j w_j m_j``
    over the data predictions ``m_0`` (at ``lambda_s``), ``m_1``, ``m_2`` (earlier).

    ``h = lambda_t - lambda_s``; ``h_prev[k] = lambda_{s_k} - lambda_{s_{k+1}}`` (the earlier intervals). With
    ``D1 ~ h x0'`` and ``D2 ~ h^2 x0'' / 2`` the backward divided differences (Lu et al. 2022b, Algorithm 2),
    ``x_t = ... + alpha_t (I_0 m_0 + I_1 / h D1 + 2 I_2 / h^2 D2)`` with ``I_k`` from :func:`phi`.
    ``solver_type="midpoint"`` weights ``D1`` by ``I_0 / 2`` (Algorithm 2 of the paper), ``"heun"`` by
    ``I_1 / h``. ``d2_weight="diffusers"`` uses diffusers' / k-diffusion's ``I_2 / h^2`` on ``D2`` (half the
    Taylor weight: second-order consistent only; kept for parity).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order: expected 1, 2 or 3, got {order}")
    if order == 1:
        return [phi(0, h)]
    r0 = h_prev[0] / h
    d1_0 = [1 / r0, -1 / r0, 0.0]  # D1_0 = (m0 - m1) / r0
    if order == 2:
        c1 = 0.5 * phi(0, h) if solver_type == "midpoint" else phi(1, h) / h
        return [phi(0, h) + c1 * d1_0[0], c1 * d1_0[1]]
    r1 = h_prev[1] / h
    d1_1 = [0.0, 1 / r1, -1 / r1]  # D1_1 = (m1 - m2) / r1
    diff = [a - b for a, b in zip(d1_0, d1_1)]
    d1 = [a + r0 / (r0 + r1) * b for a, b in zip(d1_0, diff)]
    d2 = [b / (r0 + r1) for b in diff]
    c2 = (2.0 if d2_weight == "taylor" else 1.0) * phi(2, h) / h**2
    c1 = phi(1, h) / h
    return [phi(0, h) * (j == 0) + c1 * a + c2 * b for j, (a, b) in enumerate(zip(d1, d2))]


def _multistep_order(
    order: int, i: int, steps: int, lower_order_final: bool, history: list[GridPoint]
) -> int:
    """Order of step ``i``: limited by the outputs available (warm-up), by infinite earlier intervals,
    and near the end of short runs (``lower_order_final`` and fewer than 15 steps: diffusers' rule)."""
    p = min(order, i + 1)
    if lower_order_final and steps < 15:
        p = min(p, steps - i)
    for k in range(1, p):  # an earlier interval of infinite length carries no polynomial information
        if not math.isfinite(step_length(history[-k - 1], history[-k])):
            return k
    return p


def _dpmpp_multistep(
    order: int,
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    cond: dict[str, Any],
    callback: Callback | None,
    lower_order_final: bool,
    solver_type: SolverType,
    d2_weight: D2Weight,
) -> Tensor:
    pts = grid_points(denoiser.schedule, grid)
    steps = len(pts) - 1
    history: list[GridPoint] = []
    outputs: list[Tensor] = []
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        x0 = denoiser.estimate(x, s.t, **cond).x0
        history, outputs = ([*history, s])[-order:], ([*outputs, x0])[-order:]
        if t.is_data:
            x = x0
        else:
            p = _multistep_order(order, i, steps, lower_order_final, history)
            h = step_length(s, t)
            h_prev = [history[-k - 1].lam - history[-k - 2].lam for k in range(p - 1)]
            w = multistep_weights(p, h, h_prev, solver_type, d2_weight) if p > 1 else [phi(0, h)]
            x = weighted_sum(
                [(x, t.sigma / s.sigma), *((mj, t.alpha * wj) for wj, mj in zip(w, reversed(outputs)))]
            )
        if callback is not None:
            callback(i, t.t, x, x0)
    return x


@register(
    "dpmpp_2m",
    nfe_per_step=1,
    description="DPM-Solver++(2M), multistep, data prediction (Lu et al. 2022b, Algorithm 2)",
)
def sample_dpmpp_2m(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
    lower_order_final: bool = True,
    solver_type: SolverType = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2): one network call per step, second order.

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase`; x: ``(B, ...)`` state at ``grid[0]``;
        grid: float64 CPU times decreasing towards ``t = 0``.
        lower_order_final: first order on the last step of runs shorter than 15 steps (stabler at few NFE).
        solver_type: ``"midpoint"`` (the paper) or ``"heun"`` (diffusers' alternative weight on ``D1``).
    Returns:
        ``(B, ...)`` samples at ``grid[-1]`` (the data estimate if ``grid[-1] == 0``).
    """
    _check_choice("solver_type", solver_type, ("midpoint", "heun"))
    return _dpmpp_multistep(2, denoiser, x, grid, cond, callback, lower_order_final, solver_type, "taylor")


@register(
    "dpmpp_3m",
    nfe_per_step=1,
    description="DPM-Solver++(3M), multistep third order, data prediction (Lu et al. 2022b)",
)
def sample_dpmpp_3m(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
    lower_order_final: bool = True,
    d2_weight: D2Weight = "taylor",
) -> Tensor:
    """DPM-Solver++(3M): one network call per step, the last three data predictions as a quadratic in
    ``lambda``. See :func:`multistep_weights` for ``d2_weight`` (``"taylor"``: third order;
    ``"diffusers"``: the weight diffusers and k-diffusion use). Orders ramp up 1, 2, 3 over the first steps
    and down near the end of runs shorter than 15 steps (``lower_order_final``)."""
    _check_choice("d2_weight", d2_weight, ("taylor", "diffusers"))
    return _dpmpp_multistep(3, denoiser, x, grid, cond, callback, lower_order_final, "midpoint", d2_weight)


# --------------------------------------------------------------------------------------------
# Stochastic variants.
# --------------------------------------------------------------------------------------------


@register(
    "dpmpp_2m_sde",
    stochastic=True,
    nfe_per_step=1,
    description="DPM-Solver++(2M) SDE, data prediction (Lu et al. 2022b; sde-dpmsolver++)",
)
def sample_dpmpp_2m_sde(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: SolverType = "midpoint",
) -> Tensor:
    """Second-order multistep solver of the reverse SDE in data prediction.

    With ``h = lambda_t - lambda_s`` and ``h_eta = (1 + eta) h`` the step is
    ``x_t = (sigma_t / sigma_s) e^{-eta h} x_s + alpha_t (1 - e^{-h_eta}) (m_0 + c D1)
    + sigma_t sqrt(1 - e^{-2 eta h}) s_noise z``, with ``D1 = (m_0 - m_prev) h / h_prev``, ``c = 1/2`` (midpoint) or
    ``I_1(h_eta) / (h_eta I_0(h_eta))`` (heun); ``eta = 0`` is DPM-Solver++(2M), ``eta = 1`` the SDE solver of Lu et al. 2022b (diffusers'
    ``sde-dpmsolver++``). The step to ``t = 0`` returns the data estimate.
    """
    if eta < 0:
        raise ValueError(f"eta: expected >= 0, got {eta}")
    _check_choice("solver_type", solver_type, ("midpoint", "heun"))
    pts = grid_points(denoiser.schedule, grid)
    prev: tuple[GridPoint, Tensor] | None = None
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        x0 = denoiser.estimate(x, s.t, **cond).x0
        if t.is_data:
            x = x0
        else:
            h = step_length(s, t)
            h_eta = h * (1 + eta) if math.isfinite(h) else math.inf
            if math.isfinite(h):
                decay = math.exp(-eta * h)
            else:  # e^{-eta h} at h = inf (a step from alpha = 0): 0 with noise, 1 for the ODE (eta = 0)
                decay = 0.0 if eta > 0 else 1.0
            x = (t.sigma / s.sigma * decay) * x + (t.alpha * phi(0, h_eta)) * x0
            if prev is not None and math.isfinite(s.lam - prev[0].lam) and math.isfinite(h):
                r = (s.lam - prev[0].lam) / h
                c = 0.5 * phi(0, h_eta) if solver_type == "midpoint" else phi(1, h_eta) / h_eta
                x = x + (t.alpha * c / r) * (x0 - prev[1])
            if eta > 0:
                x = x + (t.sigma * s_noise * math.sqrt(phi(0, 2 * eta * h))) * randn(x, generator)
        prev = (s, x0)
        if callback is not None:
            callback(i, t.t, x, x0)
    return x


@register(
    "dpmpp_2s_ancestral",
    stochastic=True,
    nfe_per_step=2,
    description="DPM-Solver++(2S) with ancestral noise (Lu et al. 2022b; k-diffusion)",
)
def sample_dpmpp_2s_ancestral(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Each step: a DPM-Solver++(2S) step (midpoint in ``lambda``) down to the noise level ``sigma_down``, then
    fresh noise ``c = eta * posterior_std`` (k-diffusion's ``sigma_up`` scaled by ``alpha_t``, at most
    ``sigma_t``) with ``sigma_down^2 = sigma_t^2 - c^2``, so that the marginal noise level at ``t`` is right.
    Steps from ``alpha = 0`` take the first-order (DDIM) step to ``t`` without noise; the step to ``t = 0``
    returns the data estimate."""
    if eta < 0:
        raise ValueError(f"eta: expected >= 0, got {eta}")
    pts = grid_points(denoiser.schedule, grid)
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        d = denoiser.estimate(x, s.t, **cond)
        x0 = d.x0
        if t.is_data:
            x = x0
        else:
            up = min(eta * posterior_std(s, t), t.sigma) if math.isfinite(s.lam) else 0.0
            target = GridPoint(t.t, t.alpha, math.sqrt(max(t.sigma**2 - up**2, 0.0)))
            if math.isfinite(s.lam) and math.isfinite(target.lam):
                mid = point_at_lambda(denoiser.schedule, 0.5 * (s.lam + target.lam))
                x0 = denoiser.estimate(ddim_step(d, s, mid), mid.t, **cond).x0
                d = d.with_x0(x0)  # DPM-Solver++(2S): the first-order step with the midpoint's data estimate
            x = ddim_step(d, s, target)
            if up > 0:
                x = x + (up * s_noise) * randn(x, generator)
        if callback is not None:
            callback(i, t.t, x, x0)
    return x
