"""Windows over token streams: random ones (the clip search), fixed non-overlapping ones (evaluation), and every
window at a stride as a dataset (training). A stream is (rows, length); windows never cross rows."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["StreamWindows", "fixed_windows", "random_windows"]


def random_windows(
    stream: Tensor, seq_len: int, batch_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """``batch_size`` windows (B, seq_len) at uniform random rows and offsets of ``stream`` (rows, length)."""
    rows, length = stream.shape
    if length < seq_len:
        raise ValueError(f"seq_len: expected <= stream length {length}, got {seq_len}")
    r = torch.randint(0, rows, (batch_size,), generator=generator)
    o = torch.randint(0, length - seq_len + 1, (batch_size,), generator=generator)
    idx = o[:, None] + torch.arange(seq_len)[None, :]
    return stream[r[:, None], idx]


def fixed_windows(stream: Tensor, seq_len: int, max_windows: int | None = None) -> Tensor:
    """Non-overlapping windows (N, seq_len) of every row of ``stream``, in order (for evaluation)."""
    rows, length = stream.shape
    n = length // seq_len
    out = stream[:, : n * seq_len].reshape(rows * n, seq_len)
    return out if max_windows is None else out[:max_windows]


class StreamWindows(Dataset):
    """Every window (seq_len,) of ``stream`` (rows, length) starting at a multiple of ``stride`` in its row."""

    def __init__(self, stream: Tensor, seq_len: int, stride: int) -> None:
        rows, length = stream.shape
        if length < seq_len or stride < 1:
            raise ValueError(
                f"seq_len, stride: expected seq_len <= row length {length} and stride >= 1, got {seq_len}, {stride}"
            )
        self.stream, self.seq_len = stream, seq_len
        self.starts = torch.arange(0, length - seq_len + 1, stride)
        self.rows = rows

    def __len__(self) -> int:
        return self.rows * len(self.starts)

    def __getitem__(self, i: int) -> Tensor:
        row, k = divmod(i, len(self.starts))
        start = int(self.starts[k])
        return self.stream[row, start : start + self.seq_len]
