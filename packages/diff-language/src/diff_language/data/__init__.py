"""Data of diff-language, all offline: the synthetic HMM language (exact likelihood), English prose from
``pydoc_data.topics``, the user's ``.txt`` / ``.jsonl`` files; token streams and windows over them.

- :mod:`~diff_language.data.synthetic`: :class:`SparseHMM`, a seeded sparse hidden Markov language.
- :mod:`~diff_language.data.corpus`: :func:`build_corpus` (from a :class:`~diff_language.config.CorpusConfig`)
  and the readers behind it.
- :mod:`~diff_language.data.windows`: random, fixed and strided windows of a token stream (rows, length).
"""

from diff_language.data.corpus import (
    TokenCorpus,
    build_corpus,
    corpus_hmm,
    pydoc_documents,
    read_documents,
    split_documents,
    synthetic_corpus,
    text_corpus,
)
from diff_language.data.synthetic import SparseHMM
from diff_language.data.windows import StreamWindows, fixed_windows, random_windows

__all__ = [
    "SparseHMM",
    "StreamWindows",
    "TokenCorpus",
    "build_corpus",
    "corpus_hmm",
    "fixed_windows",
    "pydoc_documents",
    "random_windows",
    "read_documents",
    "split_documents",
    "synthetic_corpus",
    "text_corpus",
]
