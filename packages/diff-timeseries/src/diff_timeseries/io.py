"""Files of diff-timeseries: CSV (and Parquet) tables and PNG plots a person can open, every write through
:mod:`diffcore.io` (atomic).

- :class:`SeriesSamples`: generated series with their captions -> ``samples.csv`` (one row per series and
  step: ``series, caption, channel, step, value``), ``captions.txt`` and ``samples.png`` (a grid of plots
  titled by caption).
- :class:`Forecast`: ``forecast_paths.csv`` (one column per sample path), ``forecast_quantiles.csv``
  (time, q0.1, q0.5, q0.9) and ``forecast.png`` (a fan chart: the history, the 10-90% band and the median).
- :class:`Imputation`: ``imputed.csv`` (time, observed, imputed median, q0.1, q0.9) and ``imputed.png``.
"""

from __future__ import annotations

import io as _io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from diffcore.io import atomic_path, write_bytes, write_text

__all__ = ["Forecast", "Imputation", "PerColumn", "SeriesSamples", "future_times", "write_table"]

QUANTILES = (0.1, 0.5, 0.9)


def write_table(frame, path: str | Path) -> Path:  # frame: pandas.DataFrame
    """Write a DataFrame as CSV, or as Parquet when ``path`` ends in ``.parquet`` (needs pyarrow)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path
    return write_text(path, frame.to_csv(index=False))


def _figure_png(fig) -> bytes:
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def future_times(times: np.ndarray, horizon: int) -> np.ndarray:
    """The ``horizon`` times after ``times`` at its last spacing (datetimes stay datetimes)."""
    step = times[-1] - times[-2] if len(times) > 1 else 1
    return np.asarray([times[-1] + step * (k + 1) for k in range(horizon)])


@dataclass
class SeriesSamples:
    """Generated series.

    Attributes:
        values: ``(N, C, L)`` z-scored.
        captions: the ``N`` captions they were generated from.
        plot: ``save`` also writes ``samples.png``.
    """

    values: np.ndarray
    captions: list[str]
    plot: bool = True

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def frame(self):
        """The samples as a long table: one row per ``(series, channel, step)`` with its caption and value."""
        import pandas as pd

        n, c, length = self.values.shape
        return pd.DataFrame(
            {
                "series": np.repeat(np.arange(n), c * length),
                "caption": np.repeat(np.asarray(self.captions, dtype=object), c * length),
                "channel": np.tile(np.repeat(np.arange(c), length), n),
                "step": np.tile(np.arange(length), n * c),
                "value": self.values.reshape(-1),
            }
        )

    def save(self, folder: str | Path, *, max_plots: int = 16, parquet: bool = False) -> list[Path]:
        """Write ``samples.csv`` (or ``.parquet``), ``captions.txt`` and (with ``plot``) ``samples.png``."""
        folder = Path(folder)
        files = [write_table(self.frame(), folder / ("samples.parquet" if parquet else "samples.csv"))]
        files.append(write_text(folder / "captions.txt", "\n".join(self.captions) + "\n"))
        if self.plot:
            files.append(write_bytes(folder / "samples.png", self.png(max_plots)))
        return files

    def png(self, max_plots: int = 16) -> bytes:
        """A grid of the first ``max_plots`` series, each titled by its caption."""
        plt = _pyplot()
        n = min(len(self), max_plots)
        cols = min(4, n)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.axis("off")
                continue
            for ch in range(self.values.shape[1]):
                ax.plot(self.values[i, ch], lw=1.2)
            ax.set_title("\n".join(textwrap.wrap(self.captions[i], 42)), fontsize=7)
            ax.tick_params(labelsize=6)
        fig.tight_layout()
        return _figure_png(fig)


@dataclass
class Forecast:
    """A probabilistic forecast.

    Attributes:
        column: the series' name.
        history_times: ``(T,)`` times of the observed series.
        history: ``(T,)`` its values.
        times: ``(H,)`` the forecast times.
        paths: ``(S, H)`` sample paths.
        plot: ``save`` also writes the fan chart.
    """

    column: str
    history_times: np.ndarray
    history: np.ndarray
    times: np.ndarray
    paths: np.ndarray
    plot: bool = True
    quantile_levels: tuple[float, ...] = field(default=QUANTILES)

    def quantiles(self) -> np.ndarray:
        """``(len(quantile_levels), H)``."""
        return np.quantile(self.paths, self.quantile_levels, axis=0)

    def save(self, folder: str | Path) -> list[Path]:
        """Write ``forecast_paths.csv`` (one column per sample path), ``forecast_quantiles.csv`` and, with
        ``plot``, ``forecast.png`` into ``folder``; returns the files."""
        import pandas as pd

        folder = Path(folder)
        paths = pd.DataFrame({"time": self.times})
        for s in range(self.paths.shape[0]):
            paths[f"sample_{s}"] = self.paths[s]
        q = self.quantiles()
        quant = pd.DataFrame(
            {"time": self.times, **{f"q{lv:g}": q[i] for i, lv in enumerate(self.quantile_levels)}}
        )
        files = [
            write_table(paths, folder / "forecast_paths.csv"),
            write_table(quant, folder / "forecast_quantiles.csv"),
        ]
        if self.plot:
            files.append(write_bytes(folder / "forecast.png", self.png()))
        return files

    def png(self, show_history: int = 200) -> bytes:
        """A fan chart (PNG bytes): the last ``show_history`` observed steps, the median and the 10-90% and
        25-75% bands of the paths."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ht, hv = self.history_times[-show_history:], self.history[-show_history:]
        ax.plot(ht, hv, color="black", lw=1.2, label="observed")
        q = np.quantile(self.paths, [0.1, 0.25, 0.5, 0.75, 0.9], axis=0)
        ax.fill_between(self.times, q[0], q[4], color="tab:blue", alpha=0.2, label="10-90%")
        ax.fill_between(self.times, q[1], q[3], color="tab:blue", alpha=0.35, label="25-75%")
        ax.plot(self.times, q[2], color="tab:blue", lw=1.5, label="median")
        ax.set_title(
            f"{self.column}: {len(self.times)}-step forecast from {self.paths.shape[0]} sample paths",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        return _figure_png(fig)


@dataclass
class Imputation:
    """A series with its missing values filled.

    Attributes:
        column: the series' name.
        times: ``(T,)``.
        values: ``(T,)`` observed values (NaN where missing).
        observed: ``(T,)`` bool.
        paths: ``(S, T)`` sample paths (equal to ``values`` where observed).
        plot: ``save`` also writes a PNG.
    """

    column: str
    times: np.ndarray
    values: np.ndarray
    observed: np.ndarray
    paths: np.ndarray
    plot: bool = True

    def median(self) -> np.ndarray:
        """The median over sample paths ``(T,)``."""
        return np.median(self.paths, axis=0)

    def save(self, folder: str | Path) -> list[Path]:
        """Write ``imputed.csv`` (observed, imputed median, 10% and 90% quantiles, which were missing) and,
        with ``plot``, ``imputed.png`` into ``folder``; returns the files."""
        import pandas as pd

        folder = Path(folder)
        q = np.quantile(self.paths, [0.1, 0.9], axis=0)
        frame = pd.DataFrame(
            {
                "time": self.times,
                "observed": self.values,
                "imputed": self.median(),
                "q0.1": q[0],
                "q0.9": q[1],
                "was_missing": ~self.observed,
            }
        )
        files = [write_table(frame, folder / "imputed.csv")]
        if self.plot:
            files.append(write_bytes(folder / "imputed.png", self.png()))
        return files

    def png(self) -> bytes:
        """A plot (PNG bytes) of the observed points, the imputed median and its 10-90% band."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, 3.2))
        q = np.quantile(self.paths, [0.1, 0.9], axis=0)
        ax.fill_between(self.times, q[0], q[1], color="tab:orange", alpha=0.25, label="10-90%")
        ax.plot(self.times, self.median(), color="tab:orange", lw=1.0, label="imputed median")
        ax.plot(
            self.times[self.observed], self.values[self.observed], ".", color="black", ms=3, label="observed"
        )
        ax.set_title(f"{self.column}: {int((~self.observed).sum())} missing values filled", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return _figure_png(fig)


@dataclass
class PerColumn:
    """Results of several columns (:class:`Forecast` or :class:`Imputation`), each saved in a folder named
    after its column."""

    parts: list

    @property
    def paths(self) -> np.ndarray:
        """``(S, ..., C)``: the sample paths of every column."""
        return np.stack([p.paths for p in self.parts], -1)

    @property
    def observed(self) -> np.ndarray:
        return np.stack([p.observed for p in self.parts], -1)

    def save(self, folder: str | Path) -> list[Path]:
        """Save each part in a sub-folder of ``folder`` named after its column; returns every file written."""
        import re

        files: list[Path] = []
        for p in self.parts:
            files += p.save(Path(folder) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", str(p.column)) or "column"))
        return files
