"""The training set: series at several lengths with captions, and interleaved batches of one length each.

T2S (Ge et al. 2025) trains on lengths 24, 48 and 96 by interleaving: every batch holds series of one
length, and consecutive batches cycle through the lengths. :class:`LengthBatches` is that loader's data set:
item ``i`` is the whole batch ``i`` (length ``lengths[i % k]``, its rows drawn by a generator seeded from
``(seed, i)``), so the order, and a resumed run's position in it, are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diff_timeseries.data.files import SUFFIXES, SeriesTable, load_folder, load_table
from diff_timeseries.data.real import captioned_windows, statsmodels_series
from diff_timeseries.data.synthetic import caption_of, synthetic_set
from diff_timeseries.features import describe

__all__ = [
    "LengthBatches",
    "SeriesSet",
    "build_series_set",
    "length_batch_loader",
    "table_windows",
    "trim_padding",
]


@dataclass
class SeriesSet:
    """Series grouped by length.

    Attributes:
        values: length -> ``(N, C, L)`` float32 z-scored windows.
        captions: length -> their ``N`` captions.
        notes: what was done to the data on the way (windows dropped for missing values, files skipped).
    """

    values: dict[int, np.ndarray]
    captions: dict[int, list[str]]
    notes: list[str] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return sorted(self.values)

    @property
    def channels(self) -> int:
        return int(next(iter(self.values.values())).shape[1])

    def all_captions(self) -> list[str]:
        """Every caption of the set, length by length."""
        return [c for length in self.lengths for c in self.captions[length]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.values.values())


def table_windows(
    table: SeriesTable, length: int, stride: int | None = None
) -> tuple[np.ndarray, list[str], int]:
    """Windows ``(n, C, length)`` of all value columns of ``table`` together (z-scored per channel), their
    captions (the table's most frequent text in the window, else the estimators' caption of the first
    channel) and how many windows were left out because a value was missing."""
    stride = stride or max(1, length // 4)
    t = table.values.shape[0]
    out, caps, dropped = [], [], 0
    for s in range(0, t - length + 1, stride):
        if not table.mask[s : s + length].all():
            dropped += 1
            continue
        w = table.values[s : s + length].T  # (C, L)
        std = w.std(1, keepdims=True)
        if (std < 1e-9).any():
            continue
        out.append(((w - w.mean(1, keepdims=True)) / std).astype(np.float32))
        texts = [x for x in (table.texts or [])[s : s + length] if x]
        caps.append(max(set(texts), key=texts.count) if texts else caption_of(describe(out[-1][0])))
    values = np.stack(out) if out else np.zeros((0, table.values.shape[1], length), np.float32)
    return values, caps, dropped


def _from_path(path: Path, lengths: Sequence[int], kw: dict) -> SeriesSet:
    if path.is_dir():
        tables, skipped = load_folder(path, **kw)
    elif path.suffix.lower() in SUFFIXES or path.exists():
        tables, skipped = [load_table(path, **kw)], []
    else:
        raise FileNotFoundError(
            f"data.path: {path} does not exist (expected a CSV / Parquet file or a folder)"
        )
    notes = [f"skipped {line}" for line in skipped]
    channels = {t.values.shape[1] for t in tables}
    if len(channels) > 1:
        raise ValueError(f"data.path: the tables have different numbers of value columns {sorted(channels)}")
    values, captions = {}, {}
    for length in lengths:
        parts = [table_windows(t, length) for t in tables]
        dropped = sum(d for _, _, d in parts)
        if dropped:
            notes.append(f"length {length}: left out {dropped} windows with missing values")
        v = np.concatenate([p[0] for p in parts])
        if len(v) == 0:
            raise ValueError(f"data.path: {path} has no complete window of length {length}")
        values[length], captions[length] = v, [c for p in parts for c in p[1]]
    return SeriesSet(values, captions, notes)


def build_series_set(
    source: str,
    lengths: Sequence[int],
    num_series: int,
    seed: int,
    *,
    path: str = "",
    table_options: dict | None = None,
    exclude_tail: int = 0,
) -> SeriesSet:
    """The training series.

    Args:
        source: ``"synthetic"`` (``num_series`` per length), ``"statsmodels"`` (windows of the bundled real
            series), ``"both"``, or ``"files"`` (the tables at ``path``).
        lengths: the training lengths.
        exclude_tail: leave the last this many points of every statsmodels series out of training (the
            forecasting benchmark scores them).
    """
    if source == "files" or path:
        if not path:
            raise ValueError("data.path: source 'files' needs a path")
        return _from_path(Path(path), lengths, table_options or {})
    if source not in ("synthetic", "statsmodels", "both"):
        raise ValueError(f"data.source: expected synthetic, statsmodels, both or files, got {source!r}")
    values: dict[int, list[np.ndarray]] = {n: [] for n in lengths}
    captions: dict[int, list[str]] = {n: [] for n in lengths}
    if source in ("synthetic", "both"):
        for n in lengths:
            v, c, _ = synthetic_set(num_series, n, seed)
            values[n].append(v)
            captions[n] += c
    if source in ("statsmodels", "both"):
        series = statsmodels_series()
        if exclude_tail:
            series = [type(s)(s.name, s.values[:-exclude_tail], s.period, s.frequency) for s in series]
        for n in lengths:
            v, c, _ = captioned_windows(series, n)
            values[n].append(v)
            captions[n] += c
    return SeriesSet({n: np.concatenate(values[n]) for n in lengths}, captions)


class LengthBatches(Dataset):
    """``num_batches`` interleaved batches: batch ``i`` holds ``batch_size`` rows of length
    ``lengths[i % k]``, drawn without replacement (with, when the length has fewer rows) by a generator
    seeded from ``(seed, i)``. Each batch is ``{"x": (B, C, L), "caption": [B strings], "length": (B,)}``,
    with ``"input_ids"`` ``(B, M)`` in place of the captions when ``tokenize`` is given."""

    def __init__(
        self,
        data: SeriesSet,
        batch_size: int,
        num_batches: int,
        seed: int = 0,
        tokenize: Callable[[list[str]], Tensor] | None = None,
    ) -> None:
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size and num_batches: expected >= 1, got {batch_size}, {num_batches}")
        self.data, self.batch_size, self.num_batches, self.seed = data, batch_size, num_batches, seed
        self.tensors = {n: torch.from_numpy(v) for n, v in data.values.items()}
        self.tokens = {n: tokenize(data.captions[n]) for n in data.lengths} if tokenize else None

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, i: int) -> dict[str, object]:
        lengths = self.data.lengths
        n = lengths[i % len(lengths)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        rows = self.tensors[n].shape[0]
        if rows >= self.batch_size:
            idx = torch.randperm(rows, generator=g)[: self.batch_size]
        else:
            idx = torch.randint(rows, (self.batch_size,), generator=g)
        batch: dict[str, object] = {"x": self.tensors[n][idx], "length": torch.full((len(idx),), float(n))}
        if self.tokens is not None:
            batch["input_ids"] = trim_padding(self.tokens[n][idx])
        else:
            batch["caption"] = [self.data.captions[n][j] for j in idx.tolist()]
        return batch


def trim_padding(ids: Tensor) -> Tensor:
    """Token ids ``(B, M)`` cut to the longest row (at least one column): the padding every row has changes
    nothing under the key mask, and the caption stream costs in proportion to its length."""
    width = int((ids != 0).sum(1).max()) if ids.numel() else 0
    return ids[:, : max(width, 1)]


def _first(items: list) -> object:
    return items[0]


def length_batch_loader(dataset: LengthBatches) -> DataLoader:
    """A DataLoader over the batches of ``dataset`` in order (the interleaving is the order)."""
    return DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_first)
