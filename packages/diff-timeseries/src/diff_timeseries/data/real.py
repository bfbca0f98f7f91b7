"""Real series that ship with statsmodels (offline), windowed and captioned by the metrics' estimators.

:func:`statsmodels_series` returns named univariate series with their seasonal period (for seasonal naive,
ETS and MASE); :func:`windows` cuts any series into z-scored windows of a length; :func:`captioned_windows`
captions each window with :func:`~diff_timeseries.features.describe` and
:func:`~diff_timeseries.data.synthetic.caption_of`, the same estimators caption adherence uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diff_timeseries.data.synthetic import caption_of
from diff_timeseries.features import describe

__all__ = ["STATSMODELS_SERIES", "NamedSeries", "captioned_windows", "statsmodels_series", "windows"]


@dataclass(frozen=True)
class NamedSeries:
    """One real series.

    Attributes:
        name: ``<dataset>/<column>``.
        values: ``(T,)`` float64, in time order, no missing values.
        period: its seasonal period in steps (1: none).
        frequency: ``"monthly"``, ``"quarterly"``, ``"yearly"``.
    """

    name: str
    values: np.ndarray
    period: int
    frequency: str


STATSMODELS_SERIES = (
    "co2",
    "sunspots",
    "elnino",
    "nile",
    "macrodata/realgdp",
    "macrodata/cpi",
    "macrodata/unemp",
    "macrodata/infl",
    "danish_data/lrm",
    "interest_inflation/R",
)
"""The series :func:`statsmodels_series` knows, by name."""


def _load(name: str) -> NamedSeries:
    import statsmodels.api as sm

    dataset, _, column = name.partition("/")
    data = getattr(sm.datasets, dataset).load_pandas().data
    if dataset == "co2":  # weekly with gaps: monthly means, the few empty months filled linearly
        monthly = data["co2"].resample("MS").mean().interpolate(limit_direction="both")
        return NamedSeries(name, monthly.to_numpy(np.float64), 12, "monthly")
    if dataset == "sunspots":
        return NamedSeries(name, data["SUNACTIVITY"].to_numpy(np.float64), 11, "yearly")
    if dataset == "elnino":
        values = data.drop(columns="YEAR").to_numpy(np.float64).reshape(-1)
        return NamedSeries(name, values, 12, "monthly")
    if dataset == "nile":
        return NamedSeries(name, data["volume"].to_numpy(np.float64), 1, "yearly")
    if dataset in ("macrodata", "danish_data", "interest_inflation"):
        return NamedSeries(name, data[column].to_numpy(np.float64), 4, "quarterly")
    raise KeyError(name)


def statsmodels_series(names: tuple[str, ...] | list[str] = STATSMODELS_SERIES) -> list[NamedSeries]:
    """The named series bundled with statsmodels (read from its package files; nothing downloads)."""
    unknown = [n for n in names if n not in STATSMODELS_SERIES]
    if unknown:
        raise ValueError(f"names: unknown series {unknown}; expected some of {list(STATSMODELS_SERIES)}")
    return [_load(n) for n in names]


def windows(values: np.ndarray, length: int, stride: int | None = None) -> np.ndarray:
    """Z-scored windows ``(n, length)`` float32 of a ``(T,)`` series every ``stride`` steps (default
    ``length // 4``); constant windows are dropped (they have no shape to learn)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < length:
        raise ValueError(f"values: expected a (T,) series with T >= {length}, got shape {values.shape}")
    stride = stride or max(1, length // 4)
    starts = range(0, values.size - length + 1, stride)
    out = np.stack([values[s : s + length] for s in starts])
    std = out.std(axis=1, keepdims=True)
    keep = std[:, 0] > 1e-9
    return ((out[keep] - out[keep].mean(1, keepdims=True)) / std[keep]).astype(np.float32)


def captioned_windows(
    series: list[NamedSeries], length: int, stride: int | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """Windows ``(n, 1, length)`` of every series, their captions (from the estimators) and their source
    names."""
    values, captions, sources = [], [], []
    for s in series:
        if s.values.size < length:
            continue
        w = windows(s.values, length, stride)
        values.append(w)
        captions += [caption_of(describe(x)) for x in w]
        sources += [s.name] * len(w)
    if not values:
        raise ValueError(f"length: no series is at least {length} points long")
    return np.concatenate(values)[:, None], captions, sources
