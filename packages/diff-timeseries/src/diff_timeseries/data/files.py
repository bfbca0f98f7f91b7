"""Series in local files: CSV or Parquet tables with a time column, one or many value columns and an optional
text column. Missing values are kept as a mask (never filled or dropped silently); every mistake names the
file, the column and, for a bad value, the line.

A table reads into a :class:`SeriesTable`; a folder of tables through :func:`load_folder`, which skips the
files it cannot read and reports each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SUFFIXES", "SeriesTable", "load_folder", "load_table"]

SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass
class SeriesTable:
    """One table of series.

    Attributes:
        path: the file it came from.
        times: ``(T,)`` the time column's values (datetime64 or float), increasing; row numbers when the table
            has no time column.
        values: ``(T, C)`` float64; NaN where a value is missing.
        mask: ``(T, C)`` bool, True where a value was observed.
        columns: the ``C`` value column names.
        texts: ``(T,)`` the text column (``""`` where empty), or None.
    """

    path: Path
    times: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    columns: list[str]
    texts: list[str] | None = field(default=None)

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values (T,), mask (T,))`` of one value column."""
        if name not in self.columns:
            raise ValueError(f"column: {self.path} has no value column {name!r}; it has {self.columns}")
        i = self.columns.index(name)
        return self.values[:, i], self.mask[:, i]


def _read_frame(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a CSV or Parquet table)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from exc
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading Parquet needs pyarrow: pip install 'diff-timeseries[parquet]'"
            ) from exc
        except Exception as exc:  # pyarrow raises its own error types for a damaged file
            raise ValueError(f"{path}: not a readable Parquet table ({exc})") from exc
    raise ValueError(f"{path}: expected a .csv or .parquet file, got {suffix or 'no suffix'!r}")


def _numbers(path: Path, name: str, raw) -> tuple[np.ndarray, np.ndarray]:  # raw: pandas.Series
    """Float values and the observed mask of one column; a value that is neither a number nor empty / NA is
    an error naming its line (the header is line 1)."""
    import pandas as pd

    text = raw.astype("string").str.strip()
    missing = text.isna() | text.isin(["", "NA", "NaN", "nan", "null", "NULL", "None"])
    parsed = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = parsed.isna() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path}: line {row + 2}, column {name!r}: expected a number or an empty cell, got "
            f"{raw.iloc[row]!r}"
        )
    values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, ~np.isnan(values)


def _times(path: Path, name: str, raw) -> np.ndarray:
    import pandas as pd

    text = raw.astype("string").str.strip()
    if text.isna().any() or (text == "").any():
        row = int(np.flatnonzero((text.isna() | (text == "")).to_numpy())[0])
        raise ValueError(f"{path}: line {row + 2}, time column {name!r}: empty time")
    numeric = pd.to_numeric(text, errors="coerce")
    if not numeric.isna().any():
        times = numeric.to_numpy(np.float64)
    else:
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ValueError(
                f"{path}: line {row + 2}, time column {name!r}: expected a date/time or a number, got "
                f"{raw.iloc[row]!r}"
            )
        times = parsed.to_numpy()
    order = np.diff(times.astype("datetime64[ns]").astype(np.int64) if times.dtype.kind == "M" else times)
    if (order <= 0).any():
        row = int(np.flatnonzero(order <= 0)[0]) + 1
        raise ValueError(
            f"{path}: line {row + 2}, time column {name!r}: times must increase (sort the table first)"
        )
    return times


def load_table(
    path: str | Path,
    *,
    time_column: str | None = "auto",
    value_columns: Sequence[str] | None = None,
    text_column: str | None = None,
) -> SeriesTable:
    """Read a CSV or Parquet table of series.

    Args:
        path: the file.
        time_column: the time column's name; ``"auto"`` takes a column named ``time``, ``date``,
            ``datetime``, ``timestamp`` or ``ds`` if there is one; None: rows are equally spaced steps.
        value_columns: the series' columns; None takes every column except the time and text columns.
        text_column: a column of captions (optional).

    Returns:
        a :class:`SeriesTable`; missing values (empty, ``NA``, ``NaN``) are NaN in ``values`` and False in
        ``mask``.
    """
    path = Path(path)
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if time_column == "auto":
        time_column = next(
            (c for c in columns if c.lower() in ("time", "date", "datetime", "timestamp", "ds")), None
        )
    for what, name in (("time_column", time_column), ("text_column", text_column)):
        if name is not None and name not in columns:
            raise ValueError(f"{what}: {path} has no column {name!r}; its columns are {columns}")
    skip = {time_column, text_column}
    chosen = list(value_columns) if value_columns else [c for c in columns if c not in skip]
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise ValueError(f"value_columns: {path} has no column {missing[0]!r}; its columns are {columns}")
    if not chosen:
        raise ValueError(f"value_columns: {path} has no value column besides the time and text columns")
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no rows")
    parsed = [_numbers(path, c, frame[c]) for c in chosen]
    values = np.stack([v for v, _ in parsed], 1)
    mask = np.stack([m for _, m in parsed], 1)
    times = (
        _times(path, time_column, frame[time_column])
        if time_column
        else np.arange(len(frame), dtype=np.float64)
    )
    texts = None
    if text_column is not None:
        texts = [
            ("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            for v in frame[text_column]
        ]
    return SeriesTable(path, times, values, mask, chosen, texts)


def load_folder(folder: str | Path, **kw) -> tuple[list[SeriesTable], list[str]]:
    """Every CSV / Parquet table under ``folder`` (sorted by path), and one line per file that could not be
    read (``"<file>: <reason>"``); ``kw`` as in :func:`load_table`. An empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder}: holds no .csv or .parquet file")
    tables, skipped = [], []
    for f in files:
        try:
            tables.append(load_table(f, **kw))
        except (ValueError, ImportError, OSError) as exc:
            skipped.append(str(exc) if str(f) in str(exc) else f"{f}: {exc}")
    if not tables:
        raise ValueError(f"{folder}: no table could be read:\n" + "\n".join(skipped))
    return tables, skipped
