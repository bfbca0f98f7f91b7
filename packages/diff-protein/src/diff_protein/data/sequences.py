"""Protein sequences: FASTA and A3M reading, UniRef header labels, label vocabulary, tokenisation.

Tokens are the 20 standard amino acids in alphabetical one-letter order (``A C D E F G H I K L M N
P Q R S T V W Y`` -> 0..19) plus a mask token (20) for masked / absorbing discrete diffusion.
A3M alignments (HHblits / OpenProteinSet) mark insertions relative to the query in lowercase and
deletions with ``-``; reading keeps each hit's residues that align to the query, or with
``keep_gaps=True`` the aligned row itself (same length as the query).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = [
    "AMINO_ACIDS",
    "MASK_TOKEN",
    "UNKNOWN_LABEL",
    "VOCAB_SIZE",
    "LabelVocabulary",
    "SequenceDataset",
    "SequenceRecord",
    "UniRefHeader",
    "detokenize",
    "parse_a3m",
    "parse_fasta",
    "parse_uniref_header",
    "read_a3m",
    "read_fasta",
    "tokenize",
]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MASK_TOKEN = 20
VOCAB_SIZE = 21
MASK_CHAR = "#"
UNKNOWN_LABEL = "<unknown>"
_INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}


@dataclass(frozen=True)
class SequenceRecord:
    """One FASTA / A3M entry: the header without ``>`` and the sequence."""

    header: str
    sequence: str


def tokenize(sequence: str, unknown: str = "error") -> torch.Tensor:
    """Token ids ``(L,)`` int64 of a one-letter sequence (upper or lower case; ``#`` is the mask).

    ``unknown``: what to do with non-standard letters (X, B, Z, U, O, ...): ``"error"`` raises,
    ``"mask"`` maps them to the mask token.
    """
    if unknown not in ("error", "mask"):
        raise ValueError(f"unknown: expected 'error' or 'mask', got {unknown!r}")
    ids = []
    for pos, ch in enumerate(sequence.upper()):
        if ch in _INDEX:
            ids.append(_INDEX[ch])
        elif ch == MASK_CHAR or unknown == "mask":
            ids.append(MASK_TOKEN)
        else:
            raise ValueError(f"sequence: non-standard residue {ch!r} at position {pos} (pass unknown='mask')")
    return torch.tensor(ids, dtype=torch.long)


def detokenize(tokens: torch.Tensor | Sequence[int]) -> str:
    """One-letter string of token ids; the mask token prints as ``#``."""
    out = []
    for t in torch.as_tensor(tokens).tolist():
        if not 0 <= t < VOCAB_SIZE:
            raise ValueError(f"tokens: expected ids in [0, {VOCAB_SIZE}), got {t}")
        out.append(MASK_CHAR if t == MASK_TOKEN else AMINO_ACIDS[t])
    return "".join(out)


def _records(text: str, source: str = "text") -> list[tuple[str, str]]:
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif not records:
            raise ValueError(
                f"{source}: line {number}: sequence line before the first '>' header: {line[:40]!r}"
            )
        else:
            records[-1][1].append(line)
    return [(h, "".join(parts)) for h, parts in records]


def _read_text(path: str | os.PathLike[str], what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no {what} file at {p}")
    try:
        return p.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"path: {p} is not a text ({what}) file ({exc})") from exc


def parse_fasta(text: str, source: str = "text") -> list[SequenceRecord]:
    """Records of FASTA text (multi-line sequences joined; ``;``/``#`` comment lines skipped); errors name
    ``source`` and the line."""
    return [SequenceRecord(h, s) for h, s in _records(text, source)]


def read_fasta(path: str | os.PathLike[str]) -> list[SequenceRecord]:
    """Records of a FASTA file (an error names the file and line it cannot read)."""
    return parse_fasta(_read_text(path, "FASTA"), source=str(path))


def parse_a3m(text: str, keep_gaps: bool = False, source: str = "text") -> list[SequenceRecord]:
    """Records of A3M text with lowercase insertions (and ``.``) removed; gaps ``-`` removed too unless
    ``keep_gaps`` (then every row has the query's length). Empty rows are dropped."""
    out = []
    for header, seq in _records(text, source):
        aligned = re.sub(r"[a-z.]", "", seq)
        residues = aligned if keep_gaps else aligned.replace("-", "")
        if residues.replace("-", ""):
            out.append(SequenceRecord(header, residues))
    return out


def read_a3m(path: str | os.PathLike[str], keep_gaps: bool = False) -> list[SequenceRecord]:
    """Records of an A3M file (see :func:`parse_a3m`)."""
    return parse_a3m(_read_text(path, "A3M"), keep_gaps, source=str(path))


@dataclass(frozen=True)
class UniRefHeader:
    """Fields of a UniRef header ``UniRef90_X/3-139 [...] Name n=1 Tax=Homo sapiens TaxID=9606 RepID=X``.

    Missing fields are ``None``; ``identifier`` is the first word.
    """

    identifier: str
    description: str
    members: int | None
    taxon: str | None
    tax_id: int | None
    rep_id: str | None


_FIELD = re.compile(r"\b(n|Tax|TaxID|RepID)=")


def parse_uniref_header(header: str) -> UniRefHeader:
    """Split a UniRef-style header into its ``key=value`` fields (values may contain spaces)."""
    header = header.lstrip(">").strip()
    identifier, _, rest = header.partition(" ")
    matches = list(_FIELD.finditer(rest))
    description = (rest[: matches[0].start()] if matches else rest).strip()
    fields: dict[str, str] = {}
    for m, nxt in zip(matches, [*matches[1:], None]):
        fields[m.group(1)] = rest[m.end() : nxt.start() if nxt else len(rest)].strip()

    def as_int(v: str | None) -> int | None:
        return int(v) if v is not None and v.isdigit() else None

    return UniRefHeader(
        identifier,
        description,
        as_int(fields.get("n")),
        fields.get("Tax") or None,
        as_int(fields.get("TaxID")),
        fields.get("RepID") or None,
    )


class LabelVocabulary:
    """Class labels (e.g. taxa) to integer ids; id 0 is :data:`UNKNOWN_LABEL`, for unseen or rare labels."""

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels: list[str] = [UNKNOWN_LABEL, *dict.fromkeys(x for x in labels if x != UNKNOWN_LABEL)]
        self._index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_counts(cls, labels: Iterable[str | None], min_count: int = 1) -> LabelVocabulary:
        """Labels seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(label for label in labels if label)
        kept = sorted((label for label, c in counts.items() if c >= min_count), key=lambda x: (-counts[x], x))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, label: str | None) -> int:
        """Id of ``label``; 0 (unknown) for ``None`` or a label not in the vocabulary."""
        return self._index.get(label, 0) if label else 0

    def decode(self, index: int) -> str:
        """Label of an id."""
        if not 0 <= index < len(self.labels):
            raise ValueError(f"index: expected 0 <= index < {len(self.labels)}, got {index}")
        return self.labels[index]


class SequenceDataset(Dataset):
    """Tokenised sequences with class labels: items ``{"tokens": (L,) int64, "label": () int64}``.

    ``labels`` are strings (or ``None`` for unknown) encoded with ``vocabulary`` (built from them
    when not given). Sequences longer than ``max_length`` are cropped at a deterministic offset 0.
    """

    def __init__(
        self,
        sequences: Sequence[str],
        labels: Sequence[str | None] | None = None,
        vocabulary: LabelVocabulary | None = None,
        max_length: int | None = None,
        unknown: str = "mask",
    ) -> None:
        labels = list(labels) if labels is not None else [None] * len(sequences)
        if len(labels) != len(sequences):
            raise ValueError(f"labels: expected {len(sequences)} labels, got {len(labels)}")
        self.vocabulary = vocabulary or LabelVocabulary.from_counts(labels)
        self.tokens = [tokenize(s[:max_length] if max_length else s, unknown) for s in sequences]
        self.labels = torch.tensor([self.vocabulary.encode(label) for label in labels], dtype=torch.long)

    @classmethod
    def from_uniref_records(
        cls, records: Sequence[SequenceRecord], min_count: int = 1, label_field: str = "taxon", **kwargs
    ) -> SequenceDataset:
        """Dataset labelled by a UniRef header field: ``label_field="taxon"`` (``Tax=`` name) or
        ``"tax_id"`` (``TaxID=``); records without it, or rarer than ``min_count``, are unknown."""
        if label_field not in ("taxon", "tax_id"):
            raise ValueError(f"label_field: expected 'taxon' or 'tax_id', got {label_field!r}")
        labels = []
        for r in records:
            value = getattr(parse_uniref_header(r.header), label_field)
            labels.append(None if value is None else str(value))
        vocab = kwargs.pop("vocabulary", None) or LabelVocabulary.from_counts(labels, min_count)
        return cls([r.sequence for r in records], labels, vocab, **kwargs)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[index], "label": self.labels[index]}
