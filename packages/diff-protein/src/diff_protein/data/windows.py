"""Training windows cut from real chains: every protein chain of a folder of PDB / mmCIF / BinaryCIF files,
split into continuous segments and cropped to windows of ``min_length``-``max_length`` residues.

The filters are the usual ones of structure-model training sets (FrameDiff, Yim et al. 2023, App. C; RFdiffusion
and FrameFlow crop the same way): a file whose stated resolution is worse than ``max_resolution`` is skipped
(files that state none, e.g. NMR models, are kept unless ``require_resolution``); residues missing N, CA, C or O
are dropped by :func:`diff_protein.io.chains_from_atom_array`, and the chain is *split* wherever two residues
that follow each other are farther apart than ``max_ca_ca`` (a chain break: a disordered loop left out of the
model, or a dropped residue) and at every non-standard residue (``X``), so that no window bridges a gap the
network would read as a 3.8 A bond. Repeated chains of a homo-oligomer (identical sequence) are kept once.
A segment of up to ``max_length`` residues is one window; a longer one gives windows of ``max_length``
starting every ``stride`` residues, the last one ending at the segment's end.

Items are those of :class:`~diff_protein.data.structures.StructureDataset` (atoms centred on the CA centroid
of the window, residue frames from N, CA, C), so either dataset trains the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from diff_protein import io
from diff_protein.data.structures import backbone_example

__all__ = ["ChainWindows", "Window", "WindowConfig", "chain_segments", "window_starts"]


@dataclass(frozen=True)
class WindowConfig:
    """How real chains become training windows (see the module docstring).

    ``min_length``/``max_length``: window lengths (residues, inclusive); ``stride``: step between window starts
    in a long segment; ``max_resolution``: angstrom (``None``: any); ``require_resolution``: skip files that
    state no resolution; ``max_ca_ca``: a larger CA-CA distance between neighbours is a chain break (angstrom;
    a trans peptide is 3.80, a cis one about 2.9).
    """

    min_length: int = 64
    max_length: int = 128
    stride: int = 32
    max_resolution: float | None = 3.5
    require_resolution: bool = False
    max_ca_ca: float = 4.2

    def __post_init__(self) -> None:
        if not 8 <= self.min_length <= self.max_length:
            raise ValueError(
                f"min_length, max_length: expected 8 <= min <= max, got {self.min_length}, {self.max_length}"
            )
        if self.stride < 1:
            raise ValueError(f"stride: expected >= 1, got {self.stride}")
        if self.max_resolution is not None and self.max_resolution <= 0:
            raise ValueError(
                f"max_resolution: expected a positive resolution or None, got {self.max_resolution}"
            )
        if not 3.8 < self.max_ca_ca < 10.0:
            raise ValueError(f"max_ca_ca: expected a distance in (3.8, 10) angstrom, got {self.max_ca_ca}")


@dataclass(frozen=True)
class Window:
    """One training window: ``coords (L, 4, 3)`` float32 angstrom (N, CA, C, O), ``sequence``, ``residue_ids
    (L,)``, the source ``name`` (file stem), ``chain_id`` and the window's ``start`` in its chain."""

    coords: np.ndarray
    sequence: str
    residue_ids: np.ndarray
    name: str
    chain_id: str
    start: int


def chain_segments(coords: np.ndarray, sequence: str, max_ca_ca: float = 4.2) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of the continuous stretches of a chain ``coords (L, 4, 3)``: split where
    neighbouring CAs are farther apart than ``max_ca_ca`` and at non-standard residues (``X``, left out)."""
    if len(sequence) != len(coords):
        raise ValueError(f"sequence: expected {len(coords)} residues, got {len(sequence)}")
    ca = np.asarray(coords, dtype=np.float64)[:, 1]
    gap = np.linalg.norm(np.diff(ca, axis=0), axis=-1) > max_ca_ca  # gap[i]: break between i and i + 1
    segments, start = [], None
    for i, aa in enumerate(sequence):
        if aa == "X":
            if start is not None:
                segments.append((start, i))
            start = None
            continue
        if start is None:
            start = i
        if i + 1 == len(sequence) or gap[i]:
            segments.append((start, i + 1))
            start = None
    return segments


def window_starts(length: int, min_length: int, max_length: int, stride: int) -> list[tuple[int, int]]:
    """``(start, window length)`` of the windows of a segment of ``length`` residues: none below
    ``min_length``, the whole segment up to ``max_length``, else ``max_length`` every ``stride`` with the
    last window ending at the segment's end."""
    if length < min_length:
        return []
    if length <= max_length:
        return [(0, length)]
    starts = list(range(0, length - max_length + 1, stride))
    if starts[-1] != length - max_length:
        starts.append(length - max_length)
    return [(s, max_length) for s in starts]


class ChainWindows(Dataset):
    """Windows of the real chains under ``root`` (recursively; see the module docstring).

    ``windows`` lists them; ``skipped`` maps each excluded file to the reason; ``stats`` counts files,
    chains, segments, breaks and windows. Items: ``atoms (L, 4, 3)`` float32 centred on the CA centroid,
    ``rots (L, 3, 3)``, ``trans (L, 3)``, ``aatype (L,)``, ``residue_index (L,)`` and ``name``.
    """

    def __init__(self, root: str | os.PathLike[str], config: WindowConfig | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: no folder at {self.root}")
        self.config = config or WindowConfig()
        self.windows: list[Window] = []
        self.skipped: dict[Path, str] = {}
        counts = dict.fromkeys(("files", "chains", "duplicate_chains", "segments", "breaks", "windows"), 0)
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in io.SUFFIXES)
        for path in files:
            reason = self._add_file(path, counts)
            if reason is not None:
                self.skipped[path] = reason
        counts["windows"] = len(self.windows)
        self.stats: dict[str, int] = counts

    def _add_file(self, path: Path, counts: dict[str, int]) -> str | None:
        c = self.config
        try:
            resolution = io.read_resolution(path)
            chains = io.chains_from_atom_array(io.read_structure(path))
        except (ValueError, KeyError, OSError) as exc:
            return f"unreadable: {exc}"
        if resolution is None and c.require_resolution:
            return "no resolution stated (require_resolution)"
        if resolution is not None and c.max_resolution is not None and resolution > c.max_resolution:
            return f"resolution {resolution:.2f} A > {c.max_resolution}"
        if not chains:
            return "no protein chain with complete backbone residues"
        counts["files"] += 1
        seen: set[str] = set()
        before = len(self.windows)
        for chain in chains:
            if chain.sequence in seen:
                counts["duplicate_chains"] += 1
                continue
            seen.add(chain.sequence)
            counts["chains"] += 1
            segments = chain_segments(chain.coords, chain.sequence, c.max_ca_ca)
            counts["segments"] += len(segments)
            counts["breaks"] += max(0, len(segments) - 1)
            for s0, s1 in segments:
                for offset, n in window_starts(s1 - s0, c.min_length, c.max_length, c.stride):
                    a = s0 + offset
                    self.windows.append(
                        Window(
                            chain.coords[a : a + n].copy(),
                            chain.sequence[a : a + n],
                            np.asarray(chain.residue_ids[a : a + n]),
                            path.stem,
                            chain.chain_id,
                            a,
                        )
                    )
        if len(self.windows) == before:
            return f"no continuous stretch of >= {c.min_length} standard residues"
        return None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        w = self.windows[index]
        return backbone_example(w.coords, w.sequence, w.residue_ids, f"{w.name}_{w.chain_id}_{w.start}")
