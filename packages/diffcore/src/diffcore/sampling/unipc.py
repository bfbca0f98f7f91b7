"""UniPC: the unified predictor-corrector of Zhao et al. 2023 ("UniPC: A Unified Predictor-Corrector
Framework for Fast Sampling of Diffusion Models").

Both parts are exponential integrators in ``lambda = log(alpha / sigma)`` (see
:mod:`diffcore.sampling.steps`). In data-prediction form, from ``s`` to ``t`` with ``h = lambda_t -
lambda_s`` and the model outputs ``m_k`` at earlier points ``lambda_{s_k} = lambda_s + r_k h``:

- UniP-p (Algorithm 2): ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) m_0 - alpha_t B(h) sum_k
  a_k D_k`` with ``D_k = (m_k - m_0) / r_k`` over ``p - 1`` earlier outputs;
- UniC-p (Algorithm 1): the same with one more difference ``D_t = m(x_t) - m_0`` at the new point, which
  raises the order by one. The corrector reuses the network call that the next predictor step needs anyway,
  so UniPC costs one call per step.

The weights solve ``R a = b`` with ``R_{ik} = r_k^{i-1}`` and ``b_i = i! h phi_{i+1}(-h) / B(h)`` (Eq. 8-9 of
the paper; ``phi`` the exponential-integrator functions); ``B(h) = h`` ("bh1") or ``e^h - 1`` ("bh2"),
with ``h -> -h`` for data prediction. As in the authors' code, UniP-2 uses ``a = 1/2``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import GridPoint, ddim_step, grid_points, step_length

Variant = Literal["bh1", "bh2"]


def phi_k(k: int, z: float) -> float:
    """``phi_k(z) = sum_j z^j / (j + k)!`` (``phi_0 = e^z``, ``phi_{k+1} = (phi_k - 1/k!) / z``), with the
    series for small ``|z|`` to avoid cancellation."""
    if abs(z) < 0.5:
        return sum(z**j / math.factorial(j + k) for j in range(25))
    value = math.exp(z)
    for j in range(k):
        value = (value - 1 / math.factorial(j)) / z
    return value


def unipc_weights(order: int, h: float, rks: list[float], variant: Variant, predict_x0: bool) -> tuple:
    """``(B(h), a)`` of a UniPC update of order ``order``.

    ``rks``: the ratios ``r_k = (lambda_{s_k} - lambda_s) / h`` of the earlier outputs used, followed by 1 for
    the corrector's new point (so ``len(rks) == order`` for the corrector and ``order - 1`` for the predictor).
    Returns ``B(h)`` and the weights ``a`` of the differences ``D_k`` (same length as ``rks``).
    """
    hh = -h if predict_x0 else h
    b_h = hh if variant == "bh1" else math.expm1(hh)
    # b_i = i! * hh * phi_{i+1}(hh) / B(h), i = 1..order
    b = [math.factorial(i) * hh * phi_k(i + 1, hh) / b_h for i in range(1, order + 1)]
    n = len(rks)
    if n == 0:
        return b_h, []
    if n == 1:  # UniP-2 and UniC-1: the authors' fixed weight 1/2 (the limit of b_1 as h -> 0)
        return b_h, [0.5]
    r = torch.tensor([[rk ** (i - 1) for rk in rks] for i in range(1, n + 1)], dtype=torch.float64)
    a = torch.linalg.solve(r, torch.tensor(b[:n], dtype=torch.float64))
    return b_h, a.tolist()


def _update(
    x: Tensor,
    s: GridPoint,
    t: GridPoint,
    m0: Tensor,
    earlier: list[tuple[GridPoint, Tensor]],
    order: int,
    variant: Variant,
    predict_x0: bool,
    m_t: Tensor | None = None,
) -> Tensor:
    """One UniP (``m_t is None``) or UniC update from ``x`` at ``s`` to ``t``; ``earlier`` holds the
    ``(point, output)`` pairs before ``s``, most recent first."""
    h = step_length(s, t)
    used = earlier[: order - 1] if m_t is not None else earlier[: max(order - 1, 0)]
    rks = [(p.lam - s.lam) / h for p, _ in used]
    diffs = [(m - m0) / rk for (_, m), rk in zip(used, rks, strict=True)]
    if m_t is not None:
        rks.append(1.0)
        diffs.append(m_t - m0)
    b_h, a = unipc_weights(order, h, rks, variant, predict_x0)
    if predict_x0:  # x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) m0 - alpha_t B(h) sum a_k D_k
        out = (t.sigma / s.sigma) * x - (t.alpha * math.expm1(-h)) * m0
        scale = t.alpha * b_h
    else:  # x_t = (alpha_t / alpha_s) x - sigma_t (e^h - 1) m0 - sigma_t B(h) sum a_k D_k
        out = (t.alpha / s.alpha) * x - (t.sigma * math.expm1(h)) * m0
        scale = t.sigma * b_h
    for ak, dk in zip(a, diffs, strict=True):
        out = out - (scale * ak) * dk
    return out


def _step_order(order: int, i: int, steps: int, lower_order_final: bool, pts: list[GridPoint]) -> int:
    """Warm-up (``min(order, i + 1)``), taper at the end (``lower_order_final``: ``min(order, steps - i)``, as
    in the authors' code) and first order for steps touching an edge of the path (infinite ``h``)."""
    p = min(order, i + 1, steps - i) if lower_order_final else min(order, i + 1)
    if not math.isfinite(step_length(pts[i], pts[i + 1])):
        return 1
    for k in range(1, p):  # earlier intervals of infinite length carry no information
        if not math.isfinite(step_length(pts[i - k], pts[i - k + 1])):
            return k
    return p


@register(
    "unipc",
    nfe_per_step=1,
    description="UniPC predictor-corrector, bh1/bh2, order <= 3 (Zhao et al. 2023)",
)
def sample_unipc(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: Any = None,
    callback: Callback | None = None,
    order: int = 2,
    variant: Variant = "bh2",
    use_corrector: bool = True,
    predict_x0: bool = True,
    lower_order_final: bool = True,
) -> Tensor:
    """UniPC (Zhao et al. 2023, Algorithms 1-3): UniP-``order`` predictor, UniC corrector, one network call
    per step.

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase`; x: ``(B, ...)`` state at ``grid[0]``;
        grid: float64 CPU times decreasing towards ``t = 0``.
        order: predictor order 1..3 (the corrector adds one).
        variant: ``"bh1"`` (``B(h) = h``, better for few steps of unconditional models) or ``"bh2"``
            (``B(h) = e^h - 1``, the default of the paper for guided sampling).
        use_corrector: apply UniC after every step but the last (False: UniP alone).
        predict_x0: data-prediction form (default) or noise-prediction form.
        lower_order_final: lower the order over the last steps (stable at few steps).
    Returns:
        ``(B, ...)`` samples at ``grid[-1]`` (the data estimate if ``grid[-1] == 0``).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order: expected 1, 2 or 3, got {order!r}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant: expected 'bh1' or 'bh2', got {variant!r}")
    pts = grid_points(denoiser.schedule, grid)
    steps = len(pts) - 1
    earlier: list[tuple[GridPoint, Tensor]] = []  # (point, output), most recent first
    x_prev, prev_order = x, 0
    for i, (s, t) in enumerate(itertools.pairwise(pts)):
        d = denoiser.estimate(x, s.t, **cond)
        m = d.x0 if predict_x0 else d.eps
        if use_corrector and i > 0 and math.isfinite(step_length(pts[i - 1], s)):
            p0, m0 = earlier[0]
            x = _update(x_prev, p0, s, m0, earlier[1:], prev_order, variant, predict_x0, m_t=m)
        earlier = [(s, m), *earlier][:order]
        p = _step_order(order, i, steps, lower_order_final, pts)
        x_prev, prev_order = x, p
        if t.is_data or (p == 1 and not math.isfinite(step_length(s, t))):
            x = ddim_step(d, s, t)  # the data estimate at t = 0, else the first-order step
        else:
            x = _update(x, s, t, m, earlier[1:], p, variant, predict_x0)
        if callback is not None:
            callback(i, t.t, x, d.x0)
    return x
