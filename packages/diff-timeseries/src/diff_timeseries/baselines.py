"""Baselines users already trust, as sample paths so CRPS compares like with like.

- :func:`seasonal_naive_paths`: ``y_{T+h} = y_{T+h-m}`` plus Gaussian errors whose variance grows with the
  number of seasons ahead, from the in-sample seasonal differences (Hyndman & Athanasopoulos, FPP3 Sec. 5.5);
- :func:`ets_paths`: statsmodels' ``ETSModel`` (additive error, additive damped trend, additive season when
  ``m > 1``), simulated;
- :func:`arima_paths`: statsmodels' ``ARIMA`` (1, 1, 1) (with a seasonal (0, 1, 1) when ``m > 1``), Gaussian
  predictive distribution;
- :func:`linear_interpolation`: the imputation baseline.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["arima_paths", "ets_paths", "linear_interpolation", "seasonal_naive_paths"]


def seasonal_naive_paths(
    history: np.ndarray, horizon: int, period: int, samples: int, seed: int = 0
) -> np.ndarray:
    """``(samples, horizon)`` paths of the seasonal naive forecast (``period = 1``: the naive forecast)."""
    h = np.asarray(history, np.float64)
    m = max(1, int(period))
    if h.size <= m:
        raise ValueError(f"history: expected more than period = {m} points, got {h.size}")
    point = np.array([h[h.size - m + (k % m)] for k in range(horizon)])
    sigma = np.std(h[m:] - h[:-m], ddof=1) if h.size > m + 1 else 0.0
    seasons = np.floor(np.arange(horizon) / m) + 1
    rng = np.random.default_rng(seed)
    return point + sigma * np.sqrt(seasons) * rng.standard_normal((samples, horizon))


def ets_paths(history: np.ndarray, horizon: int, period: int, samples: int, seed: int = 0) -> np.ndarray:
    """``(samples, horizon)`` simulated paths of an ETS(A, Ad, A) model (ETS(A, Ad, N) when ``period <= 1`` or
    the history is shorter than two seasons) fitted by statsmodels."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    h = np.asarray(history, np.float64)
    seasonal = "add" if period > 1 and h.size >= 2 * period + 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter; the fit is still used
        model = ETSModel(
            h,
            error="add",
            trend="add",
            damped_trend=True,
            seasonal=seasonal,
            seasonal_periods=period if seasonal else None,
        )
        fit = model.fit(disp=False, maxiter=200)
        sims = fit.simulate(horizon, repetitions=samples, anchor="end", rng=np.random.default_rng(seed))
    return np.asarray(sims, np.float64).reshape(horizon, samples).T


def arima_paths(history: np.ndarray, horizon: int, period: int, samples: int, seed: int = 0) -> np.ndarray:
    """``(samples, horizon)`` draws from the Gaussian predictive marginals of ARIMA(1,1,1)(0,1,1)_m fitted by
    statsmodels (ARIMA(1,1,1) when ``period <= 1``)."""
    from statsmodels.tsa.arima.model import ARIMA

    h = np.asarray(history, np.float64)
    seasonal = (0, 1, 1, period) if period > 1 and h.size >= 3 * period else (0, 0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ARIMA(h, order=(1, 1, 1), seasonal_order=seasonal).fit()
        fc = fit.get_forecast(horizon)
        mean, sd = np.asarray(fc.predicted_mean), np.sqrt(np.asarray(fc.var_pred_mean))
    rng = np.random.default_rng(seed)
    return mean + sd * rng.standard_normal((samples, horizon))


def linear_interpolation(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``values`` with the unobserved points linearly interpolated between observed neighbours (held flat
    beyond the first / last observed point)."""
    v = np.asarray(values, np.float64)
    obs = np.asarray(observed, bool)
    t = np.arange(v.size)
    return np.interp(t, t[obs], v[obs])
