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
    "CorpusSpec",
    "TokenCorpus",
    "build_corpus",
    "fixed_windows",
    "pydoc_documents",
    "random_windows",
    "read_documents",
    "split_documents",
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


@dataclass
class CorpusSpec:
    """How to rebuild a corpus (saved as ``corpus.json`` in a run folder).

    kind: ``"synthetic"`` (the HMM with ``hmm_*`` settings), ``"pydoc"`` or ``"files"`` (``paths``).
    tokenizer: ``"bpe"`` (trained on the training split, ``bpe_vocab`` ids) or ``"bytes"``; the synthetic
    language always uses its word-level vocabulary.
    """

    kind: str = "synthetic"
    paths: tuple[str, ...] = ()
    tokenizer: str = "bpe"
    bpe_vocab: int = 512
    hmm_states: int = 6
    hmm_vocab: int = 16
    hmm_branching: int = 3
    hmm_emit: int = 3
    hmm_seed: int = 0
    train_tokens: int = 1_000_000

    def __post_init__(self) -> None:
        if self.kind not in ("synthetic", "pydoc", "files"):
            raise ValueError(f"kind: expected 'synthetic', 'pydoc' or 'files', got {self.kind!r}")
        if self.tokenizer not in ("bpe", "bytes"):
            raise ValueError(f"tokenizer: expected 'bpe' or 'bytes', got {self.tokenizer!r}")
        if self.kind == "files" and not self.paths:
            raise ValueError("paths: expected at least one .txt or .jsonl file for kind='files'")

    def hmm(self) -> SparseHMM:
        return SparseHMM(self.hmm_states, self.hmm_vocab, self.hmm_branching, self.hmm_emit, self.hmm_seed)


def split_documents(docs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every 10th document to validation; a single document is split 90 / 10 by characters."""
    if len(docs) == 1:
        cut = int(0.9 * len(docs[0]))
        return [docs[0][:cut]], [docs[0][cut:]]
    return [d for i, d in enumerate(docs) if i % 10 != 0], [d for i, d in enumerate(docs) if i % 10 == 0]


def build_corpus(spec: CorpusSpec, tokenizer: TextTokenizer | None = None) -> TokenCorpus:
    """The corpus ``spec`` describes; ``tokenizer`` (e.g. loaded from a run) replaces training a new one."""
    from diff_language.tokenizer import ByteTokenizer, train_bpe

    if spec.kind == "synthetic":
        return synthetic_corpus(
            spec.hmm(), train_tokens=spec.train_tokens, val_tokens=max(20_000, spec.train_tokens // 10)
        )
    if spec.kind == "pydoc":
        train_docs, val_docs = pydoc_documents()
    else:
        train_docs, val_docs = split_documents(read_documents(spec.paths))
    if tokenizer is None:
        tokenizer = ByteTokenizer() if spec.tokenizer == "bytes" else train_bpe(train_docs, spec.bpe_vocab)
    return text_corpus(spec.kind, train_docs, val_docs, tokenizer)
