"""Offline corpora as token streams, and random / fixed windows over them.

- :func:`synthetic_corpus`: the sparse HMM language (:mod:`diff_language.synthetic`), word-level tokens.
- :func:`pydoc_documents`: English prose on every Python install, ``pydoc_data.topics`` (the ``help()``
  topics), split by a fixed rule: every 10th topic (sorted by name) is validation.
- :func:`read_documents`: the user's ``.txt`` files (one document each) or ``.jsonl`` files (one document per
  line, the ``text`` field).

A corpus is a :class:`TokenCorpus`: train and validation streams of shape (rows, length); windows never
cross rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diff_language.synthetic import SparseHMM
from diff_language.tokenizer import TextTokenizer, word_level

__all__ = [
    "TokenCorpus",
    "fixed_windows",
    "pydoc_documents",
    "random_windows",
    "read_documents",
    "synthetic_corpus",
    "text_corpus",
]


@dataclass
class TokenCorpus:
    """Token streams (rows, length) for training and validation, with their tokeniser."""

    name: str
    train: Tensor
    val: Tensor
    tokenizer: TextTokenizer
    hmm: SparseHMM | None = None


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


def synthetic_corpus(
    hmm: SparseHMM | None = None,
    train_tokens: int = 1_000_000,
    val_tokens: int = 100_000,
    row_len: int = 2048,
    seed: int = 0,
) -> TokenCorpus:
    """Stationary HMM runs cut into rows of ``row_len`` symbols; symbol ``i`` is the word ``s<i>`` (id ``i``)."""
    hmm = hmm or SparseHMM()
    g = torch.Generator().manual_seed(seed)
    train = hmm.sample(max(1, train_tokens // row_len), row_len, g)
    val = hmm.sample(max(1, val_tokens // row_len), row_len, g)
    tok = word_level([f"s{i}" for i in range(hmm.vocab_size)])
    return TokenCorpus("synthetic-hmm", train, val, tok, hmm)


def pydoc_documents() -> tuple[list[str], list[str]]:
    """(train, validation) documents of ``pydoc_data.topics``; every 10th topic by sorted name is validation."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    train = [topics[n] for i, n in enumerate(names) if i % 10 != 0]
    val = [topics[n] for i, n in enumerate(names) if i % 10 == 0]
    return train, val


def read_documents(paths: Sequence[str | Path], jsonl_field: str = "text") -> list[str]:
    """Documents from ``.txt`` files (whole file) and ``.jsonl`` files (field ``jsonl_field`` of each line)."""
    docs: list[str] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"paths: {p} is not a file")
        if p.suffix == ".jsonl":
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    record = json.loads(line)
                    if jsonl_field not in record:
                        raise ValueError(f"paths: {p}:{n} has no field {jsonl_field!r}")
                    docs.append(str(record[jsonl_field]))
        else:
            docs.append(p.read_text(encoding="utf-8", errors="replace"))
    return docs


def text_corpus(
    name: str, train_docs: Sequence[str], val_docs: Sequence[str], tokenizer: TextTokenizer
) -> TokenCorpus:
    """Encode documents (each followed by EOS) into one train row and one validation row."""
    if not train_docs or not val_docs:
        raise ValueError("train_docs, val_docs: expected at least one document each")
    train = torch.tensor(tokenizer.encode_documents(train_docs), dtype=torch.long)[None]
    val = torch.tensor(tokenizer.encode_documents(val_docs), dtype=torch.long)[None]
    return TokenCorpus(name, train, val, tokenizer)
