"""Exact and near-duplicate removal of documents, deterministic (no salted hashes, no global RNG).

- Exact: documents equal after normalising whitespace (trailing spaces, blank lines, line endings).
- Near: MinHash (Broder 1997) of the document's word 5-shingles, ``num_perm`` universal hash functions
  ``(a x + b) mod p`` drawn from a fixed seed; candidates from LSH banding (Leskovec et al., *Mining of Massive
  Datasets*, Sec. 3.4: ``bands`` bands of ``num_perm / bands`` rows), kept as duplicates when the estimated
  Jaccard similarity (the fraction of equal MinHash values) is at least ``threshold``.

Documents are visited in the order given; the first of a group is kept and the later ones are reported as
duplicates of it, so a sorted input gives the same result on every run.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["Deduplicator", "minhash", "normalise", "shingles"]

_PRIME = (1 << 31) - 1  # Mersenne prime: a, x < 2^31 keep a x + b below 2^63 in uint64
_WORD = re.compile(r"\w+|[^\w\s]")


def normalise(text: str) -> str:
    """Text with line endings unified, trailing spaces and blank lines removed (the exact-duplicate key)."""
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def shingles(text: str, k: int = 5) -> np.ndarray:
    """CRC32 hashes (uint64) of the distinct ``k``-grams of the text's word and punctuation tokens."""
    words = _WORD.findall(text)
    if len(words) < k:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]
    return np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams)))


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
    return a, b


def minhash(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature (num_perm,) of a set of hashes: ``min_x (a x + b) mod p`` per hash function, with
    ``p = 2^31 - 1`` and ``x`` reduced mod ``p`` first (Carter & Wegman universal hashing); ``a, b, x < p`` keep
    ``a x + b`` below ``2^63``, so uint64 arithmetic does not overflow. ``a, b``: (num_perm,) in [1, p), [0, p).
    """
    hashes = hashes % np.uint64(_PRIME)
    out = np.full(a.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    for chunk in range(0, len(hashes), 4096):
        x = hashes[chunk : chunk + 4096]
        values = (a[:, None] * x[None, :] + b[:, None]) % np.uint64(_PRIME)
        out = np.minimum(out, values.min(axis=1))
    return out


class Deduplicator:
    """Stream documents through :meth:`check`; it says whether each is new or duplicates one seen before.

    Args:
        threshold: estimated Jaccard similarity of word 5-shingles at or above which two documents are
            near-duplicates (in (0, 1]).
        num_perm: MinHash functions (a multiple of ``bands``).
        bands: LSH bands; with ``r = num_perm / bands`` rows the candidate threshold is about
            ``(1 / bands) ** (1 / r)``.
        seed: draws the hash functions.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, bands: int = 16, seed: int = 0) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}")
        if num_perm % bands:
            raise ValueError(f"num_perm: expected a multiple of bands={bands}, got {num_perm}")
        self.threshold = threshold
        self.rows = num_perm // bands
        self.a, self.b = _permutations(num_perm, seed)
        self.exact: dict[bytes, str] = {}
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.signatures: list[np.ndarray] = []
        self.keys: list[str] = []

    def check(self, key: str, text: str) -> tuple[str, str] | None:
        """None when ``text`` is new (it is then remembered), else ``("exact" | "near", key of the original)``."""
        digest = hashlib.sha256(normalise(text).encode()).digest()
        if digest in self.exact:
            return "exact", self.exact[digest]
        signature = minhash(shingles(text), self.a, self.b)
        bands = [
            (i, signature[i * self.rows : (i + 1) * self.rows].tobytes())
            for i in range(len(signature) // self.rows)
        ]
        for candidate in sorted({c for band in bands for c in self.buckets.get(band, ())}):
            if float(np.mean(self.signatures[candidate] == signature)) >= self.threshold:
                return "near", self.keys[candidate]
        index = len(self.keys)
        self.exact[digest] = key
        self.signatures.append(signature)
        self.keys.append(key)
        for band in bands:
            self.buckets.setdefault(band, []).append(index)
        return None

    def run(self, items: Sequence[tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """Check ``(key, text)`` pairs in order; returns the duplicates: key -> (kind, key of the original)."""
        found = {}
        for key, text in items:
            hit = self.check(key, text)
            if hit is not None:
                found[key] = hit
        return found
