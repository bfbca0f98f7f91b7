"""Estimators of a series' describable attributes: trend direction, seasonal period, noise level, events.

The same estimators caption real windows (:mod:`diff_timeseries.data.real`) and score generated series
(caption adherence in :mod:`diff_timeseries.metrics`), so a caption and its check mean the same thing.
They are calibrated on the synthetic generator (:mod:`diff_timeseries.data.synthetic`): on its clean draws
they recover each attribute at least 95% of the time (``tests/test_features.py``).

Every estimator works on one univariate series ``x`` ``(L,)`` (numpy, any scale): it is z-scored first, so
the thresholds are in units of the series' own standard deviation. Order of the decomposition:

1. spikes: a point far from its rolling median (robust z-score of the residual);
2. level shift: the step ``c 1[t >= k]`` that, with a line, best explains the spike-free series;
3. trend: the slope of the line fitted with that step, as the total change over the series;
4. period: the strongest periodogram peak of what is left (zero-padded FFT, refined to an integer lag);
5. noise: the standard deviation left after removing line, step and one sinusoid at the period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "EVENT_POSITIONS",
    "Attributes",
    "describe",
    "estimate_period",
    "trend_direction",
]

TREND_THRESHOLD = 0.9
"""|total change| of the fitted line (z units) above which a series is rising / falling."""
SPIKE_Z = 6.0
"""A point is a spike when its residual from the rolling median exceeds this many robust sigmas ..."""
SPIKE_MIN = 1.5
"""... and this many standard deviations of the series."""
SHIFT_MIN = 1.0
"""A level shift is a step of at least this many standard deviations ..."""
SHIFT_GAIN = 0.35
"""... that removes at least this fraction of the line fit's residual sum of squares."""
SEASONAL_POWER = 0.3
"""A period is reported when its sinusoid explains at least this fraction of the detrended variance."""
NOISE_THRESHOLD = 0.2
"""Residual standard deviation (z units) above which a series is ``high`` noise."""
EVENT_POSITIONS = ("start", "middle", "end")


@dataclass(frozen=True)
class Attributes:
    """What the estimators read off one series.

    Attributes:
        trend: ``"rising"``, ``"falling"`` or ``"flat"``.
        change: total change of the fitted line over the series, in standard deviations of the series.
        period: the seasonal period in steps (0: no seasonality found).
        noise: ``"low"`` or ``"high"``.
        noise_std: the residual standard deviation in standard deviations of the series.
        event: ``"none"``, ``"shift up"``, ``"shift down"``, ``"spike up"`` or ``"spike down"``.
        event_position: ``"start"``, ``"middle"`` or ``"end"`` (the third of the series), ``""`` when no event.
    """

    trend: str
    change: float
    period: int
    noise: str
    noise_std: float
    event: str
    event_position: str

    def to_dict(self) -> dict[str, object]:
        """The attributes as plain JSON-ready values (``dataclasses.asdict``)."""
        return asdict(self)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 8:
        raise ValueError(f"x: expected a univariate series of at least 8 points, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x: expected finite values (fill or mask missing points first)")
    std = x.std()
    return (x - x.mean()) / (std if std > 1e-12 else 1.0)


def _position(index: int, length: int) -> str:
    return EVENT_POSITIONS[min(2, 3 * index // length)]


def _design(n: int, period: int, step_at: int) -> np.ndarray:
    """Columns ``[1, s, (1[t >= k]), (sin, cos at the period)]`` for ``s = t / (n - 1)``."""
    t = np.arange(n)
    cols = [np.ones(n), t / (n - 1)]
    if step_at >= 0:
        cols.append((t >= step_at).astype(np.float64))
    if period:
        cols += [np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)]
    return np.stack(cols, 1)


def _fit(z: np.ndarray, period: int, step_at: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients and fitted values of :func:`_design`."""
    design = _design(z.size, period, step_at)
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    return coef, design @ coef


def _best_step(z: np.ndarray, period: int) -> tuple[int, float, float]:
    """The step position ``k`` (middle 80%) that best explains ``z`` beside a line and the sinusoid; returns
    ``(k, step size, fraction of the residual sum of squares it removes)``."""
    n = z.size
    sse0 = float(((z - _fit(z, period, -1)[1]) ** 2).sum()) + 1e-12
    best = (-1, 0.0, 0.0)
    for k in range(max(2, n // 10), n - max(2, n // 10)):
        coef, fitted = _fit(z, period, k)
        gain = 1.0 - float(((z - fitted) ** 2).sum()) / sse0
        if gain > best[2]:
            best = (k, float(coef[2]), gain)
    return best


def _structure(z: np.ndarray) -> tuple[int, int, float]:
    """(period, step position or -1, step size) of a spike-free z-scored series: the period of the line's
    residual, the best step beside it, then the period again without the step's leakage."""
    period, _ = estimate_period(z - _fit(z, 0, -1)[1])
    k, step, gain = _best_step(z, period)
    if not (abs(step) >= SHIFT_MIN and gain >= SHIFT_GAIN):
        k, step = -1, 0.0
    period, _ = estimate_period(z - _fit(z, 0, k)[1])
    return period, k, step


def _spike(z: np.ndarray, fitted: np.ndarray) -> tuple[int, float]:
    """Index and signed size of the largest spike in the residual ``z - fitted``, or (-1, 0)."""
    resid = z - fitted
    scale = 1.4826 * np.median(np.abs(resid - np.median(resid))) + 1e-9
    j = int(np.argmax(np.abs(resid)))
    if abs(resid[j]) > SPIKE_Z * scale and abs(resid[j]) > SPIKE_MIN:
        return j, float(resid[j])
    return -1, 0.0


def estimate_period(resid: np.ndarray, max_period: int | None = None) -> tuple[int, float]:
    """The dominant period (steps) of a detrended series and the fraction of its variance that one sinusoid of
    that period explains; ``(0, fraction)`` below :data:`SEASONAL_POWER`. Periods from 2 to ``max_period``
    (default ``L // 3``: at least three cycles) are tried as integers, each with its least-squares sinusoid."""
    n = resid.size
    max_period = max_period or n // 3
    t = np.arange(n)
    total = float((resid**2).sum()) + 1e-12
    best_p, best_frac = 0, 0.0
    for p in range(2, max_period + 1):
        design = np.stack([np.sin(2 * np.pi * t / p), np.cos(2 * np.pi * t / p)], 1)
        coef, *_ = np.linalg.lstsq(design, resid, rcond=None)
        frac = 1.0 - float(((resid - design @ coef) ** 2).sum()) / total
        if frac > best_frac + 1e-9:
            best_p, best_frac = p, frac
    # a harmonic (p/2, p/3) of a true period explains less than the period itself; a multiple (2p) of a true
    # period fits almost as well as p only for short series, so prefer the shortest period within 10%.
    if best_p:
        for p in range(2, best_p):
            if best_p % p == 0:
                design = np.stack([np.sin(2 * np.pi * t / p), np.cos(2 * np.pi * t / p)], 1)
                coef, *_ = np.linalg.lstsq(design, resid, rcond=None)
                frac = 1.0 - float(((resid - design @ coef) ** 2).sum()) / total
                if frac >= 0.9 * best_frac:
                    best_p, best_frac = p, frac
                    break
    return (best_p, best_frac) if best_frac >= SEASONAL_POWER else (0, best_frac)


def trend_direction(change: float) -> str:
    """``"rising"`` / ``"falling"`` / ``"flat"`` from the total change in standard deviations."""
    if change > TREND_THRESHOLD:
        return "rising"
    if change < -TREND_THRESHOLD:
        return "falling"
    return "flat"


def describe(x: np.ndarray) -> Attributes:
    """Estimate the attributes of one series ``x`` ``(L,)``, L >= 8 (see the module doc for the steps)."""
    z = _zscore(x)
    n = z.size
    period, shift_at, step = _structure(z)
    spike_at, spike = _spike(z, _fit(z, period, shift_at)[1])
    clean = z
    if spike_at >= 0:  # take the spike out and read the structure again without it
        clean = z.copy()
        clean[spike_at] -= spike
        period, shift_at, step = _structure(clean)
    coef, fitted = _fit(clean, period, shift_at)
    noise_std = float((clean - fitted).std())
    if shift_at >= 0 and (spike_at < 0 or abs(step) * 2 >= abs(spike)):
        event, where = ("shift up" if step > 0 else "shift down"), _position(shift_at, n)
    elif spike_at >= 0:
        event, where = ("spike up" if spike > 0 else "spike down"), _position(spike_at, n)
    else:
        event, where = "none", ""
    change = float(coef[1])
    return Attributes(
        trend=trend_direction(change),
        change=change,
        period=int(period),
        noise="high" if noise_std > NOISE_THRESHOLD else "low",
        noise_std=noise_std,
        event=event,
        event_position=where,
    )
