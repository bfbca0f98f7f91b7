"""The field's measures, offline, as plain numpy functions (each checked against a known answer in
``tests/test_metrics.py``).

Point and probabilistic accuracy: :func:`mse`, :func:`wape`, :func:`mase`, :func:`crps` (from samples; the
closed form of a Gaussian in :func:`crps_gaussian`), :func:`dtw`. Distribution of generated series:
:func:`frechet_distance` (C-FID when fed a series encoder's features), :func:`acf_distance`,
:func:`spectral_distance`. Retrieval: :func:`mrr_at_k` (NaN-safe). Captions: :func:`caption_adherence`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from diffcore.metrics.frechet import frechet_distance

from diff_timeseries.features import Attributes, describe

__all__ = [
    "ATTRIBUTES",
    "acf",
    "acf_distance",
    "caption_adherence",
    "crps",
    "crps_gaussian",
    "dtw",
    "frechet_distance",
    "mase",
    "mrr_at_k",
    "mse",
    "spectral_distance",
    "wape",
]

ATTRIBUTES = ("trend", "period", "noise", "event", "event_position")


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))


def wape(pred: np.ndarray, target: np.ndarray) -> float:
    """Weighted absolute percentage error ``sum |pred - y| / sum |y|`` (NaN when ``sum |y| = 0``)."""
    denom = float(np.abs(target).sum())
    return float(np.abs(np.asarray(pred) - np.asarray(target)).sum() / denom) if denom > 0 else math.nan


def crps(samples: np.ndarray, target: np.ndarray) -> float:
    """Mean CRPS of the empirical distribution of ``samples`` ``(S, ...)`` at ``target`` ``(...)``:
    ``E|X - y| - 1/2 E|X - X'|`` (Gneiting & Raftery 2007, Eq. 21), with ``E|X - X'|`` from the sorted samples
    (``2 / S^2 sum_i (2i - S - 1) x_(i)``), O(S log S)."""
    x = np.sort(np.asarray(samples, np.float64), axis=0)
    y = np.asarray(target, np.float64)
    s = x.shape[0]
    if x.shape[1:] != y.shape:
        raise ValueError(f"samples, target: expected (S, *shape) and shape, got {x.shape} and {y.shape}")
    term1 = np.abs(x - y).mean(0)
    weights = (2 * np.arange(1, s + 1) - s - 1).reshape((s,) + (1,) * y.ndim)
    term2 = 2.0 * (weights * x).sum(0) / s**2
    return float((term1 - 0.5 * term2).mean())


def crps_gaussian(mu: float, sigma: float, y: float) -> float:
    """Closed-form CRPS of N(mu, sigma^2) at y: ``sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]``
    (Gneiting et al. 2005, Eq. 5), ``z = (y - mu) / sigma``."""
    z = (y - mu) / sigma
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))


def mase(forecast: np.ndarray, target: np.ndarray, history: np.ndarray, period: int = 1) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006): ``mean |f - y|`` over the in-sample mean absolute
    error of the seasonal naive forecast of ``history`` with ``period``."""
    h = np.asarray(history, np.float64)
    if h.size <= period:
        raise ValueError(f"history: expected more than period = {period} points, got {h.size}")
    scale = np.abs(h[period:] - h[:-period]).mean()
    return float(np.abs(np.asarray(forecast) - np.asarray(target)).mean() / scale) if scale > 0 else math.nan


def dtw(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Dynamic time warping distance with absolute cost (Sakoe & Chiba 1978), no window.

    ``a`` ``(La,)`` and ``b`` ``(Lb,)`` give a float; ``a`` ``(N, La)`` and ``b`` ``(N, Lb)`` give ``(N,)`` (pairs
    row by row, the recursion vectorised over the pairs)."""
    single = np.ndim(a) == 1
    a2, b2 = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a2.shape[0] != b2.shape[0]:
        raise ValueError(f"a, b: expected the same number of series, got {a2.shape[0]} and {b2.shape[0]}")
    n, la, lb = a2.shape[0], a2.shape[1], b2.shape[1]
    cost = np.abs(a2[:, :, None] - b2[:, None, :])
    acc = np.full((n, la + 1, lb + 1), np.inf)
    acc[:, 0, 0] = 0.0
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            best = np.minimum(np.minimum(acc[:, i - 1, j], acc[:, i, j - 1]), acc[:, i - 1, j - 1])
            acc[:, i, j] = cost[:, i - 1, j - 1] + best
    out = acc[:, la, lb]
    return float(out[0]) if single else out


def mrr_at_k(similarity: np.ndarray, k: int = 10) -> float:
    """Mean reciprocal rank at ``k`` of retrieval where query ``i``'s correct item is column ``i`` of the
    ``(N, N)`` ``similarity`` (higher is more similar). Rank = 1 + the number of items strictly more similar +
    half the other items equally similar; a rank beyond ``k`` scores 0. NaN similarities rank last (a NaN
    correct item scores 0), so a broken model gives a low score, not an error."""
    s = np.asarray(similarity, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity: expected an (N, N) matrix, got shape {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    correct = np.diag(s)[:, None]
    greater = (s > correct).sum(1)
    ties = (s == correct).sum(1) - 1
    rank = 1 + greater + 0.5 * ties
    rank = np.where(np.isneginf(correct[:, 0]), np.inf, rank)
    rr = np.where(rank <= k, 1.0 / rank, 0.0)
    return float(rr.mean())


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..``max_lag`` of each row of ``x`` ``(N, L)`` -> ``(N, max_lag)``."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(1, keepdims=True)
    var = (x**2).sum(1) + 1e-12
    return np.stack([(x[:, k:] * x[:, :-k]).sum(1) / var for k in range(1, max_lag + 1)], 1)


def acf_distance(a: np.ndarray, b: np.ndarray, max_lag: int | None = None) -> float:
    """Mean absolute difference of the average ACFs (lags 1..``max_lag``, default ``L // 4``) of two sets of
    univariate series ``(N, L)`` and ``(M, L)``."""
    max_lag = max_lag or max(1, a.shape[-1] // 4)
    return float(np.abs(acf(a, max_lag).mean(0) - acf(b, max_lag).mean(0)).mean())


def spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance (in [0, 1]) between the average normalised power spectra of two sets of
    univariate series ``(N, L)`` and ``(M, L)`` (the mean of each series removed)."""

    def spectrum(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        p = np.abs(np.fft.rfft(x - x.mean(1, keepdims=True), axis=1))[:, 1:] ** 2
        p = p / (p.sum(1, keepdims=True) + 1e-12)
        return p.mean(0)

    return float(0.5 * np.abs(spectrum(a) - spectrum(b)).sum())


def caption_adherence(series: np.ndarray, targets: Sequence[Attributes]) -> dict[str, float]:
    """Fraction of series ``(N, L)`` whose estimated attribute equals the target's, per attribute
    (``event_position`` counted only where the target has an event), and ``all`` (every attribute right)."""
    if len(series) != len(targets):
        raise ValueError(
            f"series, targets: expected as many targets as series, got {len(targets)} and {len(series)}"
        )
    hits = {a: [] for a in ATTRIBUTES}
    every = []
    for x, target in zip(series, targets):
        got = describe(x)
        row = []
        for a in ATTRIBUTES:
            if a == "event_position" and target.event == "none":
                continue
            ok = getattr(got, a) == getattr(target, a)
            hits[a].append(ok)
            row.append(ok)
        every.append(all(row))
    out = {a: float(np.mean(v)) if v else math.nan for a, v in hits.items()}
    out["all"] = float(np.mean(every))
    return out
