"""Taxonomy labels at a level with enough members, and a split of an alignment by sequence cluster.

UniRef90 headers name the taxon of a cluster (``Tax=``) at any rank: a species, a genus or an order. Classes of
the name's first word come from a small table shipped with the package (``vertebrate_classes.tsv``, built from
the NCBI Taxonomy lineages of the names in the shared haemoglobin alignment; its header states the source);
names the table lacks get no label and are counted, never guessed.

Held-out data must not be near-copies of training data, so sequences are grouped by greedy clustering at a
sequence-identity threshold (the CD-HIT rule: each sequence joins the first cluster whose representative it
matches at ``>= threshold`` identity, else founds a new one; Li & Godzik 2006) and whole clusters go to one side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from diff_protein.data.sequences import AMINO_ACIDS, SequenceRecord, parse_uniref_header

__all__ = [
    "aligned_window",
    "class_table",
    "cluster_by_identity",
    "one_hot_rows",
    "split_clusters",
    "taxon_class",
]


def class_table(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{taxon name: class}`` from a two-column TSV (``#`` comments, a ``name<TAB>class`` header); default: the
    shipped ``vertebrate_classes.tsv``."""
    if path is None:
        text = resources.files("diff_protein.data").joinpath("vertebrate_classes.tsv").read_text()
        source = "vertebrate_classes.tsv"
    else:
        text, source = Path(path).read_text(), str(path)
    table: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#") or line.startswith("name\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"path: {source} line {number}: expected 'name<TAB>class', got {line!r}")
        table[parts[0]] = parts[1]
    return table


def taxon_class(header: str, table: dict[str, str]) -> str | None:
    """The class of a UniRef header's ``Tax=`` name (looked up by its first word), or ``None``."""
    taxon = parse_uniref_header(header).taxon
    if not taxon:
        return None
    return table.get(taxon.split()[0])


def aligned_window(records: Sequence[SequenceRecord], start: int, length: int) -> list[tuple[int, str]]:
    """``(record index, residues)`` of the A3M rows (read with ``keep_gaps=True``: query-aligned, ``-`` for a
    deletion) that have a standard amino acid at every column of ``[start, start + length)``."""
    if start < 0 or length < 1:
        raise ValueError(f"start, length: expected >= 0 and >= 1, got {start}, {length}")
    allowed = set(AMINO_ACIDS)
    out = []
    for i, r in enumerate(records):
        window = r.sequence[start : start + length].upper()
        if len(window) == length and set(window) <= allowed:
            out.append((i, window))
    return out


ONE_HOT_SYMBOLS = AMINO_ACIDS + "-"


def one_hot_rows(sequences: Sequence[str]) -> np.ndarray:
    """Per-position one-hot features ``(N, L * 21)`` float32 of equal-length aligned rows (case-insensitive):
    position-major, 21 symbols per position in ``ONE_HOT_SYMBOLS`` order (the 20 amino acids, then ``-`` for a
    deletion); any other letter (``X``, ``B``, ...) gives an all-zero position. The input of a linear judge."""
    codes = _codes([s.upper() for s in sequences])
    lut = np.full(256, -1, dtype=np.int64)
    for k, a in enumerate(ONE_HOT_SYMBOLS):
        lut[ord(a)] = k
    index = lut[codes]
    out = np.zeros((*codes.shape, len(ONE_HOT_SYMBOLS)), dtype=np.float32)
    n, length = np.nonzero(index >= 0)
    out[n, length, index[n, length]] = 1.0
    return out.reshape(len(codes), -1)


def _codes(sequences: Sequence[str]) -> np.ndarray:
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"sequences: expected equal lengths (aligned), got lengths {sorted(lengths)[:5]}")
    return np.frombuffer("".join(sequences).encode(), dtype=np.uint8).reshape(len(sequences), -1)


def cluster_by_identity(sequences: Sequence[str], threshold: float) -> np.ndarray:
    """Cluster ids ``(N,)`` of equal-length aligned ``sequences`` by greedy clustering (module docstring) at
    position-wise identity ``>= threshold``, in the given order."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: expected an identity in (0, 1], got {threshold}")
    if not sequences:
        return np.zeros(0, dtype=np.int64)
    x = _codes(sequences)
    reps: list[int] = []
    ids = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        if reps:
            identity = (x[reps] == x[i]).mean(1)
            best = int(np.argmax(identity))
            if identity[best] >= threshold:
                ids[i] = best
                continue
        ids[i] = len(reps)
        reps.append(i)
    return ids


def split_clusters(cluster_ids: np.ndarray, held_out_fraction: float, seed: int = 0) -> np.ndarray:
    """Bool ``(N,)``: True for members of held-out clusters. Clusters are taken in a seeded random order until
    at least ``held_out_fraction`` of the sequences are held out."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction: expected a value in (0, 1), got {held_out_fraction}")
    ids = np.asarray(cluster_ids)
    order = np.random.default_rng(seed).permutation(np.unique(ids))
    sizes = np.bincount(ids)
    held = np.zeros(ids.max() + 1 if len(ids) else 0, dtype=bool)
    total = 0
    for c in order:
        if total >= held_out_fraction * len(ids):
            break
        held[c] = True
        total += sizes[c]
    return held[ids]
