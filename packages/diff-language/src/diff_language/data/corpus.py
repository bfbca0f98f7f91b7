"""Offline corpora as token streams.

- :func:`synthetic_corpus`: the sparse HMM language (:mod:`diff_language.data.synthetic`), word-level tokens.
- :func:`pydoc_documents`: English prose on every Python install, ``pydoc_data.topics`` (the ``help()``
  topics), split by a fixed rule: every 10th topic (sorted by name) is validation.
- ``python``: a folder built by :func:`~diff_language.data.python_corpus.build_python_corpus` (Python
  source and CPython documentation, split by file), read by
  :func:`~diff_language.data.python_corpus.load_python_corpus`.
- :func:`read_documents`: the user's ``.txt`` files (one document each) or ``.jsonl`` files (one document per
  line, the ``text`` field).

A corpus is a :class:`TokenCorpus`: train and validation streams of shape (rows, length); windows
(:mod:`diff_language.data.windows`) never cross rows. :func:`build_corpus` makes the one a
:class:`~diff_language.config.CorpusConfig` describes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffcore.rng import make_generator
from torch import Tensor

from diff_language.config import CorpusConfig
from diff_language.data.synthetic import SparseHMM
from diff_language.tokenizer import TextTokenizer, word_level

__all__ = [
    "TokenCorpus",
    "build_corpus",
    "corpus_hmm",
    "pydoc_documents",
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


def synthetic_corpus(
    hmm: SparseHMM | None = None,
    train_tokens: int = 1_000_000,
    val_tokens: int = 100_000,
    row_len: int = 2048,
    seed: int = 0,
) -> TokenCorpus:
    """Stationary HMM runs cut into rows of ``row_len`` symbols; symbol ``i`` is the word ``s<i>`` (id ``i``)."""
    hmm = hmm or SparseHMM()
    g = make_generator(seed)
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
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise ValueError(f"paths: {p} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
            found = [
                _jsonl_text(line, jsonl_field, f"{p}:{n}") for n, line in enumerate(lines, 1) if line.strip()
            ]
        else:
            found = [p.read_text(encoding="utf-8", errors="replace")]
        if not any(doc.strip() for doc in found):
            raise ValueError(
                f"paths: {p} is empty (expected text, or JSONL lines with a {jsonl_field!r} field)"
            )
        docs.extend(found)
    return docs


def _jsonl_text(line: str, key: str, where: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"paths: {where} is not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"paths: {where} has no field {key!r}")
    return str(record[key])


def text_corpus(
    name: str, train_docs: Sequence[str], val_docs: Sequence[str], tokenizer: TextTokenizer
) -> TokenCorpus:
    """Encode documents (each followed by EOS) into one train row and one validation row."""
    if not train_docs or not val_docs:
        raise ValueError("train_docs, val_docs: expected at least one document each")
    train = torch.tensor(tokenizer.encode_documents(train_docs), dtype=torch.long)[None]
    val = torch.tensor(tokenizer.encode_documents(val_docs), dtype=torch.long)[None]
    return TokenCorpus(name, train, val, tokenizer)


def corpus_hmm(config: CorpusConfig) -> SparseHMM:
    """The synthetic language's HMM of ``config`` (its ``hmm_*`` settings)."""
    return SparseHMM(
        config.hmm_states, config.hmm_vocab, config.hmm_branching, config.hmm_emit, config.hmm_seed
    )


def split_documents(docs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every 10th document to validation; a single document is split 90 / 10 by characters."""
    if len(docs) == 1:
        cut = int(0.9 * len(docs[0]))
        return [docs[0][:cut]], [docs[0][cut:]]
    return [d for i, d in enumerate(docs) if i % 10 != 0], [d for i, d in enumerate(docs) if i % 10 == 0]


def build_corpus(config: CorpusConfig, tokenizer: TextTokenizer | None = None) -> TokenCorpus:
    """The corpus ``config`` describes; ``tokenizer`` (e.g. a saved pipeline's) replaces training a new one."""
    from diff_language.tokenizer import ByteTokenizer, train_bpe

    if config.kind == "synthetic":
        return synthetic_corpus(
            corpus_hmm(config),
            train_tokens=config.train_tokens,
            val_tokens=max(20_000, config.train_tokens // 10),
        )
    if config.kind == "python":
        from diff_language.data.python_corpus import load_python_corpus

        data = load_python_corpus(config.paths[0], config.tokenizer)
        if tokenizer is not None:  # a saved pipeline's tokenizer must be the corpus's
            data.tokenizer = tokenizer
        return data
    if config.kind == "pydoc":
        train_docs, val_docs = pydoc_documents()
    else:
        train_docs, val_docs = split_documents(read_documents(config.paths))
    if tokenizer is None:
        tokenizer = (
            ByteTokenizer() if config.tokenizer == "bytes" else train_bpe(train_docs, config.bpe_vocab)
        )
    return text_corpus(config.kind, train_docs, val_docs, tokenizer)
