"""What the observed part of a window says about the rest: the base the forecasting / imputation prior refines
and the conditioning channels it reads.

Every function works on windows ``(B, C, L)`` (time runs left to right, step ``L - 1`` is the newest) with a
``mask`` of the same shape, 1 where a value is observed; values where ``mask`` is 0 are ignored. Everything is
computed from the observed entries only, so it is the same at training and at forecast time.

- :func:`interpolate_observed`: linear interpolation between observed points, the end values held beyond;
- :func:`observed_statistics`: the units the prior works in (mean and deviation of the observed part);
- :func:`observed_line`: the least-squares line through the observed points (its slope is the drift);
- :func:`detect_period`: the seasonal period, the highest local peak of the autocorrelation of the detrended
  observed span (Hyndman & Athanasopoulos, FPP3 Sec. 2.8: a seasonal series has peaks at multiples of its
  period), 1 when there is none;
- :func:`seasonal_continuation`: the seasonal naive forecast with drift (FPP3 Sec. 5.2) after the last observed
  point, and the same backwards before the first one;
- :func:`seasonal_profile` and :func:`holt_continuation`: the default base, an additive seasonal profile
  (classical decomposition) with seasonal + linear interpolation inside gaps and a damped Holt forecast of the
  seasonally adjusted series beyond the last observed point (ETS(A, Ad, N) plus a fixed season);
- :func:`observed_inputs`: the base (``conditioning.base``) and the conditioning channels built from the above.

Classical forecasts enter here only as inputs of the network (what it refines and what it may read); the
forecast itself is the flow model's sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diff_timeseries.config import ObservedConditioning

__all__ = [
    "ObservedInputs",
    "detect_period",
    "holt_continuation",
    "interpolate_observed",
    "observed_inputs",
    "observed_line",
    "observed_statistics",
    "residual_scale",
    "seasonal_continuation",
    "seasonal_profile",
    "validated_continuation",
    "validated_fill",
]

ACF_THRESHOLD = 0.3
"""An autocorrelation peak counts as a season only above this value and above ``3 / sqrt(n)`` (three standard
errors of white noise's autocorrelation over ``n`` points, FPP3 Sec. 2.9)."""
HARMONIC_TOLERANCE = 0.85
"""A shorter peak lag is preferred to the highest one when it is at least this fraction of it (a period's
multiples are peaks too)."""
MIN_SCALE = 0.2
"""The smallest residual scale (units of the observed part's deviation)."""


def interpolate_observed(values: Tensor, mask: Tensor) -> Tensor:
    """``(B, C, L)``: linear interpolation of ``values`` between the observed entries (``mask`` 1) of each row,
    the first / last observed value held before / after them (rows without an observed entry give 0)."""
    n = values.shape[-1]
    idx = torch.arange(n, device=values.device).expand_as(values)
    seen = mask > 0
    prev = torch.where(seen, idx, torch.full_like(idx, -1)).cummax(-1).values
    nxt = torch.where(seen, idx, torch.full_like(idx, n)).flip(-1).cummin(-1).values.flip(-1)
    prev_ok, next_ok = prev >= 0, nxt < n
    v_prev = values.gather(-1, prev.clamp(0, n - 1))
    v_next = values.gather(-1, nxt.clamp(0, n - 1))
    span = (nxt - prev).clamp_min(1).to(values.dtype)
    w = ((idx - prev).to(values.dtype) / span).clamp(0, 1)
    inside = v_prev + w * (v_next - v_prev)
    out = torch.where(prev_ok & next_ok, inside, torch.where(prev_ok, v_prev, v_next))
    return torch.where(next_ok | prev_ok, out, torch.zeros_like(out))


def observed_statistics(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation ``(B, C, 1)`` of the observed entries of ``x`` (a deviation below 1e-6
    counts as 1), the units the forecasting model works in (the future is unknown, so the whole window
    cannot be z-scored)."""
    m = mask.to(x.dtype)
    count = m.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(-1, keepdim=True) / count
    var = (((x - mean) * m) ** 2).sum(-1, keepdim=True) / count
    std = var.sqrt()
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def _span(mask: Tensor) -> tuple[Tensor, Tensor]:
    """First and last observed step ``(B, C, 1)`` of each row (``L`` and ``-1`` for a row without any)."""
    n = mask.shape[-1]
    idx = torch.arange(n, device=mask.device).expand(mask.shape)
    seen = mask > 0
    first = torch.where(seen, idx, torch.full_like(idx, n)).amin(-1, keepdim=True)
    last = torch.where(seen, idx, torch.full_like(idx, -1)).amax(-1, keepdim=True)
    return first, last


def observed_line(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Intercept and slope ``(B, C, 1)`` of the least-squares line ``a + b s`` (``s`` the step index) through
    the observed points (slope 0 for a row with fewer than two)."""
    m = mask.to(values.dtype)
    s = torch.arange(values.shape[-1], device=values.device, dtype=values.dtype)
    count = m.sum(-1, keepdim=True).clamp_min(1.0)
    s_mean = (m * s).sum(-1, keepdim=True) / count
    y_mean = (m * values).sum(-1, keepdim=True) / count
    sxx = (m * (s - s_mean) ** 2).sum(-1, keepdim=True)
    sxy = (m * (s - s_mean) * (values - y_mean)).sum(-1, keepdim=True)
    slope = torch.where(sxx > 0, sxy / sxx.clamp_min(1e-12), torch.zeros_like(sxx))
    return y_mean - slope * s_mean, slope


def detect_period(values: Tensor, mask: Tensor, max_period: int = 24) -> Tensor:
    """The seasonal period ``(B, C, 1)`` (int64) of each row: the lag ``k`` in ``2 .. max_period`` (and at most
    half the observed span) of the highest local peak of the autocorrelation of the observed span, linearly
    interpolated over gaps and detrended by :func:`observed_line` (the shortest of the peaks within
    :data:`HARMONIC_TOLERANCE` of the highest, so not a multiple of the period), when that peak exceeds
    :data:`ACF_THRESHOLD` and three standard errors of white noise's; 1 (no season) otherwise. The autocorrelation is the usual estimate (FPP3 Eq. 2.1:
    lagged products summed over the span, over the sum of squares), which shrinks long lags and so prefers a
    period to its multiples."""
    n = values.shape[-1]
    m = mask.to(values.dtype)
    first, last = _span(mask)
    idx = torch.arange(n, device=values.device)
    inside = ((idx >= first) & (idx <= last)).to(values.dtype)
    a, b = observed_line(values, m)
    r = (interpolate_observed(values * m, m) - (a + b * idx)) * inside
    count = inside.sum(-1)
    power = (r * r).sum(-1).clamp_min(1e-12)
    top = min(max_period, n // 2)
    if top < 2:
        return torch.ones_like(first)
    acf = torch.stack([(r[..., k:] * r[..., :-k]).sum(-1) for k in range(1, top + 2)], -1) / power[..., None]
    lag = torch.arange(2, top + 1, device=values.device)
    here, before, after = acf[..., 1:top], acf[..., : top - 1], acf[..., 2 : top + 1]
    bound = (3.0 / count.clamp_min(1.0).sqrt()).clamp_min(ACF_THRESHOLD)[..., None]
    peak = (here > before) & (here >= after) & (here > bound) & (2 * lag <= count[..., None])
    score = torch.where(peak, here, torch.full_like(here, -math.inf))
    # a period's multiples peak about as high: take the shortest lag within HARMONIC_TOLERANCE of the best
    near = peak & (score >= HARMONIC_TOLERANCE * score.amax(-1, keepdim=True))
    best = lag[
        (near.to(torch.int8) * torch.arange(top - 1, 0, -1, device=lag.device, dtype=torch.int8)).argmax(-1)
    ]
    return torch.where(peak.any(-1), best, torch.ones_like(best))[..., None]


def seasonal_continuation(
    filled: Tensor, mask: Tensor, period: Tensor, slope: Tensor, damping: float = 1.0
) -> Tensor:
    """The seasonal naive forecast with drift, ``(B, C, L)`` (FPP3 Sec. 5.2). After the last observed step
    ``T``: ``y_{T+h} = y_{T+h-kp} + slope (kp - h + D(h))``, the value a whole number of periods
    ``k = ceil(h / p)`` back plus the drift from there to ``T`` and on for ``h`` steps, ``D(h) = h`` (linear
    drift) or ``phi + ... + phi^h`` with ``damping`` ``phi < 1`` (the damped trend, FPP3 Sec. 8.2); the same
    backwards before the first observed step; ``filled`` (the observed span filled in, e.g. by
    :func:`interpolate_observed`) inside the span. ``period`` ``(B, C, 1)`` >= 1 (1: the naive forecast with
    drift), ``slope`` ``(B, C, 1)`` per step."""
    n = filled.shape[-1]
    first, last = _span(mask)
    idx = torch.arange(n, device=filled.device).expand(filled.shape)
    p = period.clamp_min(1)
    ahead = (idx - last).clamp_min(0)
    behind = (first - idx).clamp_min(0)
    k_ahead = (ahead + p - 1) // p
    k_behind = (behind + p - 1) // p
    src = torch.where(idx > last, idx - k_ahead * p, torch.where(idx < first, idx + k_behind * p, idx))
    src = src.clamp(0, n - 1)
    dtype = filled.dtype
    if damping < 1.0:  # phi + ... + phi^h
        drift_ahead = damping * (1 - damping ** ahead.to(dtype)) / (1 - damping)
        drift_behind = damping * (1 - damping ** behind.to(dtype)) / (1 - damping)
    else:
        drift_ahead, drift_behind = ahead.to(dtype), behind.to(dtype)
    steps = torch.where(
        idx > last,
        (last - src).to(dtype) + drift_ahead,
        torch.where(idx < first, (first - src).to(dtype) - drift_behind, torch.zeros_like(drift_ahead)),
    )
    return filled.gather(-1, src) + slope * steps


HOLT_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Level smoothing weights :func:`holt_continuation` chooses from."""
HOLT_BETAS = (0.0, 0.05, 0.2)
"""Trend smoothing weights, as fractions of the level's (``beta = f alpha``, so ``beta <= alpha``)."""
HOLT_PHIS = (0.9, 0.98)
"""Trend dampings :func:`holt_continuation` chooses from."""
HOLT_MIN_SCALE = 0.05
"""The smallest residual scale beyond the span with the ``holt`` base and ``scaled`` (units of the observed
part's deviation): a smooth window's one-step error is small, and the residual is generated in its units."""


def seasonal_profile(
    values: Tensor, mask: Tensor, period: Tensor, sweeps: int = 4, *, leave_out: bool = False
) -> Tensor:
    """``(B, C, L)``: the additive seasonal component of each step, the mean over the observed points of the same
    phase (step modulo ``period``) of the series less its least-squares line, centred over the phases
    (classical decomposition, FPP3 Sec. 3.4); line and phase means are refitted in turn ``sweeps`` times
    (backfitting towards their joint least-squares fit: a line through a seasonal series absorbs part of the
    season). 0 where ``period`` is 1 or a phase has no observed point. ``leave_out``: at each observed step, its
    phase mean without that step (its leave-one-out value; the line and the centring kept; 0 where the step is
    its phase's only point)."""
    n = values.shape[-1]
    m = mask.to(values.dtype)
    idx = torch.arange(n, device=values.device)
    p = period.clamp_min(1)
    phase = idx.expand(values.shape) % p  # (B, C, L)
    top = int(p.max()) if p.numel() else 1
    onehot = (phase[..., None] == torch.arange(top, device=values.device)).to(values.dtype)  # (B, C, L, P)
    counts = (m[..., None] * onehot).sum(-2)
    valid = (torch.arange(top, device=values.device) < p).to(values.dtype)
    prof = torch.zeros_like(values)
    for _ in range(max(1, sweeps)):
        a, b = observed_line((values - prof) * m, m)
        sums = (((values - (a + b * idx)) * m)[..., None] * onehot).sum(-2)
        means = torch.where(counts > 0, sums / counts.clamp_min(1.0), torch.zeros_like(sums))
        centre = (means * valid).sum(-1, keepdim=True) / p.to(values.dtype)
        means = (means - centre) * valid
        prof = means.gather(-1, phase)
    if leave_out:
        own = (values - (a + b * idx)) * m
        n_phase = counts.gather(-1, phase)
        rest = (sums.gather(-1, phase) - own) / (n_phase - 1).clamp_min(1.0) - centre
        prof = torch.where(n_phase > 1, rest, torch.zeros_like(rest))
    return torch.where(p > 1, prof, torch.zeros_like(prof))


def holt_continuation(
    values: Tensor, mask: Tensor, period: Tensor, *, with_error: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """``(B, C, L)``: the observed span filled by linear interpolation of the seasonally adjusted series plus
    the :func:`seasonal_profile` (seasonal + linear interpolation inside gaps), and after the last observed
    step the forecast of a damped Holt model (ETS(A, Ad, N), FPP3 Sec. 8.2) of the seasonally adjusted series
    plus the profile: ``l_T + (phi + ... + phi^h) b_T + s_{T+h}``. Its weights ``alpha, beta, phi`` are those of
    the grid :data:`HOLT_ALPHAS` x :data:`HOLT_BETAS` x :data:`HOLT_PHIS` with the smallest in-sample squared
    one-step error over the observed points (a grid instead of statsmodels' optimiser, so that a whole batch of
    windows is fitted at once in torch). Before the first observed step: the seasonal naive continuation
    backwards with the line's drift, as :func:`seasonal_continuation`. With ``with_error`` also returns the
    chosen fit's in-sample root mean square one-step error ``(B, C, 1)`` (1 for a row without a scored step)."""
    n = values.shape[-1]
    m = mask.to(values.dtype)
    prof = seasonal_profile(values, m, period)
    adjusted = interpolate_observed((values - prof) * m, m)
    filled = adjusted + prof
    first, last = _span(mask)
    dtype, dev = values.dtype, values.device
    grid = torch.tensor(
        [(a, f * a, p) for a in HOLT_ALPHAS for f in HOLT_BETAS for p in HOLT_PHIS], dtype=dtype, device=dev
    )
    alpha, beta, phi = grid[:, 0], grid[:, 1], grid[:, 2]
    _, slope = observed_line(values * m, m)
    start = adjusted.gather(-1, first.clamp(0, n - 1))
    level = start.expand(*values.shape[:-1], grid.shape[0]).clone()
    trend = slope.expand_as(level).clone()
    sse = torch.zeros_like(level)
    steps = torch.arange(n, device=dev)
    active = ((steps > first) & (steps <= last)).to(dtype)  # (B, C, L): updated from the second observed step
    weight = active * m  # errors scored at observed steps only
    for i in range(n):
        err = adjusted[..., i : i + 1] - level - phi * trend
        gate = active[..., i : i + 1]
        sse.addcmul_(err.square(), weight[..., i : i + 1])
        ge = gate * err
        level = level + gate * phi * trend + alpha * ge
        trend = trend + gate * (phi - 1) * trend + beta * ge
    best = sse.argmin(-1, keepdim=True)
    scored = weight.sum(-1, keepdim=True)
    rms = torch.where(
        scored > 0, (sse.gather(-1, best) / scored.clamp_min(1)).sqrt(), torch.ones_like(scored)
    )
    level, trend, phi_b = level.gather(-1, best), trend.gather(-1, best), phi[best]
    idx = torch.arange(n, device=dev).expand(values.shape)
    ahead = (idx - last).clamp_min(0).to(dtype)
    damped = torch.where(phi_b < 1, phi_b * (1 - phi_b**ahead) / (1 - phi_b).clamp_min(1e-6), ahead)
    forecast = level + damped * trend + prof
    behind = seasonal_continuation(filled, mask, period, slope)
    out = torch.where(idx > last, forecast, torch.where(idx < first, behind, filled))
    return (out, rms) if with_error else out


SMOOTHING_BANDWIDTHS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
"""Gaussian kernel bandwidths (steps) :func:`validated_fill` chooses from, besides linear interpolation."""


def _loo_linear(values: Tensor, mask: Tensor) -> Tensor:
    """``(B, C, L)``: each observed entry predicted by linear interpolation between the nearest observed entries
    before and after it (itself left out); NaN where it lacks one on either side or is unobserved."""
    n = values.shape[-1]
    idx = torch.arange(n, device=values.device).expand(values.shape)
    seen = mask > 0
    prev = torch.where(seen, idx, torch.full_like(idx, -1)).cummax(-1).values
    prev = torch.cat([torch.full_like(prev[..., :1], -1), prev[..., :-1]], -1)  # strictly before
    nxt = torch.where(seen, idx, torch.full_like(idx, n)).flip(-1).cummin(-1).values.flip(-1)
    nxt = torch.cat([nxt[..., 1:], torch.full_like(nxt[..., :1], n)], -1)  # strictly after
    ok = seen & (prev >= 0) & (nxt < n)
    v_prev, v_next = values.gather(-1, prev.clamp(0, n - 1)), values.gather(-1, nxt.clamp(0, n - 1))
    w = (idx - prev).to(values.dtype) / (nxt - prev).clamp_min(1).to(values.dtype)
    return torch.where(ok, v_prev + w * (v_next - v_prev), torch.full_like(values, math.nan))


def _local_linear(values: Tensor, mask: Tensor, bandwidth: float, leave_out: bool) -> Tensor:
    """``(B, C, L)``: the local linear kernel regression (Gaussian kernel of ``bandwidth`` steps) of the
    observed entries at every step (Fan & Gijbels 1996, Eq. 3.4: the intercept of a weighted least-squares line
    centred at the step); the local mean where the line is not determined. ``leave_out``: each step's own
    entry gets no weight (its leave-one-out prediction)."""
    n = values.shape[-1]
    t = torch.arange(n, device=values.device, dtype=values.dtype)
    d = t[None, :] - t[:, None]  # (L, L): d[i, j] = t_j - t_i
    kernel = torch.exp(-0.5 * (d / bandwidth) ** 2)
    if leave_out:
        kernel = kernel * (1 - torch.eye(n, device=values.device, dtype=values.dtype))
    w = kernel * mask[..., None, :]  # (B, C, L, L)
    s0, s1, s2 = w.sum(-1), (w * d).sum(-1), (w * d * d).sum(-1)
    y0, y1 = (w * values[..., None, :]).sum(-1), (w * d * values[..., None, :]).sum(-1)
    det = s0 * s2 - s1 * s1
    steady = det > 1e-6 * (s0 * s0).clamp_min(1e-30)
    line = (s2 * y0 - s1 * y1) / torch.where(steady, det, torch.ones_like(det))
    return torch.where(steady, line, y0 / s0.clamp_min(1e-30))


def _fill_candidates(values: Tensor, mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``(leave-one-out prediction, fill)`` pairs ``(B, C, L)`` of linear interpolation and of local linear
    kernel regression at each of :data:`SMOOTHING_BANDWIDTHS`."""
    out = [(torch.nan_to_num(_loo_linear(values, mask)), interpolate_observed(values, mask))]
    for h in SMOOTHING_BANDWIDTHS:
        out.append((_local_linear(values, mask, h, True), _local_linear(values, mask, h, False)))
    return out


def validated_fill(values: Tensor, mask: Tensor, period: Tensor) -> Tensor:
    """``(B, C, L)``: the gaps inside the observed span filled, per row, by linear interpolation or by local
    linear kernel regression at one of :data:`SMOOTHING_BANDWIDTHS`, of the series itself or of the series less
    its :func:`seasonal_profile` (added back), whichever predicts the row's observed entries best when each is
    left out (leave-one-out cross-validation, mean absolute error over the entries with an observed neighbour on
    both sides; the season's phase means without the entry). Linear interpolation suits smooth rows; on noisy
    rows it copies its two neighbours' noise, and a smoother that averages more of them is closer to the hidden
    value; a season helps a strictly periodic row and hurts a quasi-periodic one. Observed entries are kept;
    beyond the span the ends are held, as :func:`interpolate_observed`.

    ``values``: ``(B, C, L)`` zero where unobserved; ``mask``: 1 where observed; ``period`` ``(B, C, 1)``."""
    m = mask.to(values.dtype)
    scored = ~torch.isnan(_loo_linear(values, m))
    count = scored.sum(-1, keepdim=True).clamp_min(1)
    prof = seasonal_profile(values, m, period)
    prof_loo = seasonal_profile(values, m, period, leave_out=True)
    adjusted = (values - prof) * m
    candidates = _fill_candidates(values, m)
    candidates += [(loo + prof_loo, fill + prof) for loo, fill in _fill_candidates(adjusted, m)]
    best, best_error = None, None
    for loo, fill in candidates:
        error = torch.where(scored, (loo - values).abs(), torch.zeros_like(loo)).sum(-1, keepdim=True) / count
        better = error < best_error if best_error is not None else torch.ones_like(error, dtype=torch.bool)
        best = fill if best is None else torch.where(better, fill, best)
        best_error = error if best_error is None else torch.where(better, error, best_error)
    first, last = _span(mask)
    idx = torch.arange(values.shape[-1], device=values.device).expand(values.shape)
    inside = (idx >= first) & (idx <= last) & (m == 0)
    return torch.where(inside, best, interpolate_observed(values, m))  # type: ignore[arg-type]


VALIDATION_MIN_SCALE = 0.05
"""The smallest residual scale beyond the span with the ``validated`` base and ``scaled`` (units of the observed
part's deviation)."""


VALIDATION_ORIGINS = 2
"""Forecast origins :func:`validated_continuation` scores its candidates at (time series cross-validation)."""


def _forecast_candidates(
    values: Tensor, mask: Tensor, period: Tensor, damping: float
) -> tuple[Tensor, Tensor]:
    """The two forecasts :func:`validated_continuation` chooses between, from the entries where ``mask`` is 1:
    :func:`holt_continuation` and :func:`seasonal_continuation` with the least-squares drift."""
    _, slope = observed_line(values * mask, mask)
    seasonal = seasonal_continuation(interpolate_observed(values * mask, mask), mask, period, slope, damping)
    return holt_continuation(values * mask, mask, period), seasonal  # type: ignore[return-value]


def validated_continuation(
    values: Tensor, mask: Tensor, period: Tensor, damping: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """The ``validated`` base: per row, the :func:`holt_continuation` or the :func:`seasonal_continuation` with
    drift beyond the last observed step, whichever forecast the row's own last observed steps better.

    Validation is the forecaster's usual out-of-sample check on the history alone (FPP3 Sec. 5.8, time series
    cross-validation at :data:`VALIDATION_ORIGINS` origins): at origin ``k`` the observed steps up to ``v k``
    steps before the last are kept, both candidates are fitted on them and forecast the next ``v``; the squared
    errors of all origins are summed. ``v`` is the row's forecast horizon (the unobserved steps after its last
    observed one), at least 1, and all origins together hold out at most half of the observed points. Inside and
    before the span the base is :func:`holt_continuation`'s, whichever forecast is chosen.

    Args:
        values: ``(B, C, L)`` zero where unobserved; ``mask`` ``(B, C, L)`` 1 where observed.
        period: ``(B, C, 1)`` the seasonal period (1: none), used by both candidates.
        damping: the seasonal candidate's drift damping (see :func:`seasonal_continuation`).

    Returns:
        ``(base (B, C, L), error (B, C, 1), holt_chosen (B, C, 1) bool)``: ``error`` is the chosen candidate's
        root mean square error on the held-out steps of every origin (the size of its multi-step error, what the residual
        beyond the span is made of; 1 for a row with nothing held out).
    """
    n = values.shape[-1]
    m = mask.to(values.dtype)
    _, last = _span(mask)
    idx = torch.arange(n, device=values.device).expand(values.shape)
    horizon = (n - 1 - last).clamp_min(1)
    # (B, C, 1) steps held out per origin; 0: too few points to hold any out
    hold = torch.minimum(horizon, (m.sum(-1, keepdim=True) / (2 * VALIDATION_ORIGINS)).long())
    errors = [torch.zeros_like(hold, dtype=values.dtype) for _ in range(2)]
    count = torch.zeros_like(errors[0])
    for k in range(1, VALIDATION_ORIGINS + 1):  # origin k: fitted up to last - k v, scored on the next v
        fit = m * (idx <= last - k * hold).to(m.dtype)
        held = m * (idx <= last - (k - 1) * hold).to(m.dtype) - fit
        for i, c in enumerate(_forecast_candidates(values, fit, period, damping)):
            errors[i] = errors[i] + ((c - values) * held).square().sum(-1, keepdim=True)
        count = count + held.sum(-1, keepdim=True)
    holt_chosen = errors[0] <= errors[1]
    error = torch.where(
        count > 0, (torch.minimum(*errors) / count.clamp_min(1)).sqrt(), torch.ones_like(count)
    )
    holt, seasonal = _forecast_candidates(values, m, period, damping)
    base = torch.where((idx > last) & ~holt_chosen, seasonal, holt)
    return base, error, holt_chosen


@dataclass
class ObservedInputs:
    """What :func:`observed_inputs` reads from the observed part of windows ``(B, C, L)``.

    Attributes:
        base: ``(B, C, L)`` what the generated residual is added to.
        scale: ``(B, C, L)`` the residual's unit: a sample is ``base + scale * residual``.
        channels: ``(B, (inputs - 1) C, L)`` the network's conditioning channels.
    """

    base: Tensor
    scale: Tensor
    channels: Tensor


def residual_scale(values: Tensor, mask: Tensor, period: Tensor, slope: Tensor) -> Tensor:
    """``(B, C, L)``: the unit of the residual at each step. Beyond the observed span, where the base is the
    seasonal naive forecast with drift, it is that forecast's in-sample error: the root mean square of
    ``y_t - y_{t-p} - p slope`` over the observed pairs (the scale of the benchmark forecasts' errors, FPP3
    Sec. 5.5, and of MASE's denominator, Hyndman & Koehler 2006), at least :data:`MIN_SCALE` (1 for a row
    without a pair). Inside the span, where the base interpolates, it is 1 (the observed part's deviation):
    a scale estimated there from leave-one-out interpolation errors made the smooth windows' residuals too
    large for the network."""
    n = values.shape[-1]
    idx = torch.arange(n, device=values.device).expand(values.shape)
    src = idx - period
    pair = (src >= 0) & (mask > 0) & (mask.gather(-1, src.clamp_min(0)) > 0)
    ahead = _rms(
        (values - values.gather(-1, src.clamp_min(0)) - slope * period.to(values.dtype)) * pair, pair
    )
    first, last = _span(mask)
    return torch.where((idx >= first) & (idx <= last), torch.ones_like(values), ahead)


def _rms(err: Tensor, valid: Tensor) -> Tensor:
    count = valid.sum(-1, keepdim=True)
    rms = ((err**2).sum(-1, keepdim=True) / count.clamp_min(1)).sqrt()
    return torch.where(count > 0, rms.clamp_min(MIN_SCALE), torch.ones_like(rms))


def observed_inputs(observed: Tensor, mask: Tensor, conditioning: ObservedConditioning) -> ObservedInputs:
    """The base the prior's residual is added to, the residual's scale and the network's conditioning channels:
    the base, the mask, then (with ``conditioning.features``) each of :data:`FEATURES`, channel-major (every
    series channel's copy of one input together). With ``conditioning.scaled`` the features that are series
    values are given as their difference from the base in units of the scale (clipped to +-20).

    ``observed``: ``(B, C, L)`` values in the units of the observed part, anything where ``mask`` is 0."""
    m = mask.to(observed.dtype)
    values = observed * m
    held = interpolate_observed(values, m)
    cfg = conditioning
    one = torch.ones_like(held[..., :1])
    if cfg.base == "interpolation" and not cfg.features and not cfg.scaled:
        return ObservedInputs(held, one, torch.cat([held, m], 1))
    period = detect_period(values, m, cfg.max_period)
    _, slope = observed_line(values, m)
    seasonal = seasonal_continuation(held, m, period, slope, cfg.damping)
    scale = one.expand_as(held)
    if cfg.base in ("holt", "validated"):
        if cfg.base == "holt":
            base, rms = holt_continuation(values, m, period, with_error=True)
            rms = rms.clamp_min(HOLT_MIN_SCALE)
        else:
            base, rms, _ = validated_continuation(values, m, period, cfg.damping)
            rms = rms.clamp_min(VALIDATION_MIN_SCALE)
        first, last = _span(mask)
        idx = torch.arange(held.shape[-1], device=held.device).expand(held.shape)
        inside = (idx >= first) & (idx <= last)
        if cfg.fill == "validated":
            base = torch.where(inside, validated_fill(values, m, period), base)
        if cfg.scaled:  # beyond the span: units of the base's error; inside: of the deviation
            scale = torch.where(inside, scale, rms)
    else:
        base = seasonal if cfg.base == "seasonal" else held
        if cfg.scaled:
            scale = residual_scale(values, m, period, slope)
    if not cfg.features:
        return ObservedInputs(base, scale, torch.cat([base, m], 1))
    n = observed.shape[-1]
    idx = torch.arange(n, device=observed.device).expand(observed.shape)
    back = torch.where(idx - period >= 0, idx - period, idx + period).clamp(0, n - 1)
    ahead = torch.where(idx + period < n, idx + period, idx - period).clamp(0, n - 1)
    _, last = _span(mask)
    p = period.to(observed.dtype)
    angle = 2 * math.pi * (idx - last).to(observed.dtype) / p
    seasonal_flag = (period > 1).to(observed.dtype)
    levels = [
        held,
        seasonal_continuation(held, m, period, torch.zeros_like(slope)),
        base.gather(-1, back),
        base.gather(-1, ahead),
    ]
    features = [
        *levels,
        _distance_to_observed(m) / n,
        angle.sin() * seasonal_flag,
        angle.cos() * seasonal_flag,
        (p / cfg.max_period).expand_as(observed),
        scale.log(),
    ]
    return ObservedInputs(base, scale, torch.cat([base, m, *features], 1))


def _distance_to_observed(mask: Tensor) -> Tensor:
    """Steps from each entry to the nearest observed one (0 where observed; ``L`` for a row without any)."""
    n = mask.shape[-1]
    idx = torch.arange(n, device=mask.device).expand(mask.shape)
    seen = mask > 0
    prev = torch.where(seen, idx, torch.full_like(idx, -2 * n)).cummax(-1).values
    nxt = torch.where(seen, idx, torch.full_like(idx, 3 * n)).flip(-1).cummin(-1).values.flip(-1)
    return torch.minimum(idx - prev, nxt - idx).clamp_max(n).to(mask.dtype)
