"""Reading and writing protein files: structures (PDB, mmCIF, BinaryCIF, through biotite) and FASTA.

Reading keeps amino-acid residues that have all four backbone atoms (N, CA, C, O), first altloc,
first model; a file biotite cannot parse is reported by name. Writing produces standard files any viewer
reads (PyMOL, ChimeraX, Mol*): the format follows the file suffix (``.pdb``, ``.cif``, ``.bcif``). Every
write goes through :mod:`diffcore.io` (a temporary file and an atomic rename).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import biotite.structure as struc
import biotite.structure.io as strucio
import numpy as np
from biotite.sequence import ProteinSequence
from diffcore.io import atomic_path, write_text

from diff_protein.geometry import ATOM_NAMES

__all__ = [
    "SUFFIXES",
    "ProteinChain",
    "backbone_to_atom_array",
    "chains_from_atom_array",
    "read_backbone",
    "read_resolution",
    "read_structure",
    "three_to_one",
    "write_backbone",
    "write_fasta",
]

SUFFIXES = (".pdb", ".cif", ".bcif")
"""File suffixes understood for reading and writing."""

_MODIFIED = {"MSE": "M", "SEC": "C", "PYL": "K", "HYP": "P", "SEP": "S", "TPO": "T", "PTR": "Y"}


@dataclass(frozen=True)
class ProteinChain:
    """One chain's backbone.

    ``coords: (L, 4, 3)`` float32 angstrom, atoms N, CA, C, O; ``sequence``: one-letter codes (``X``
    for unknown residues), length L; ``residue_ids: (L,)`` author residue numbers; ``chain_id``.
    """

    coords: np.ndarray
    sequence: str
    residue_ids: np.ndarray
    chain_id: str

    def __post_init__(self) -> None:
        if self.coords.ndim != 3 or self.coords.shape[1:] != (4, 3):
            raise ValueError(f"coords: expected shape (L, 4, 3), got {self.coords.shape}")
        if len(self.sequence) != len(self.coords) or len(self.residue_ids) != len(self.coords):
            raise ValueError(
                f"sequence, residue_ids: expected length {len(self.coords)}, got "
                f"{len(self.sequence)}, {len(self.residue_ids)}"
            )

    def __len__(self) -> int:
        return len(self.coords)


def three_to_one(res_name: str) -> str:
    """One-letter code of a residue name; common modified residues map to their parent, others to ``X``."""
    name = res_name.upper()
    if name in _MODIFIED:
        return _MODIFIED[name]
    try:
        return ProteinSequence.convert_letter_3to1(name)
    except KeyError:
        return "X"


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"path: expected a file ending in one of {SUFFIXES}, got {path.name!r}")
    return suffix


def read_structure(path: str | os.PathLike[str], model: int = 1) -> struc.AtomArray:
    """All atoms of one model (1-based) of a PDB / mmCIF / BinaryCIF file, as a biotite ``AtomArray``."""
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no structure file at {path}")
    try:
        return strucio.load_structure(str(path), model=model)
    except Exception as exc:  # biotite's parsers raise many types (TypeError, KeyError, msgpack errors, ...)
        raise ValueError(f"path: cannot read {path} as a structure ({type(exc).__name__}: {exc})") from exc


_RESOLUTION_FIELDS = (
    ("refine", "ls_d_res_high"),
    ("reflns", "d_resolution_high"),
    ("em_3d_reconstruction", "resolution"),
)


def read_resolution(path: str | os.PathLike[str]) -> float | None:
    """The experimental resolution (angstrom) a structure file states, or ``None`` when it states none.

    mmCIF / BinaryCIF: ``refine.ls_d_res_high``, else ``reflns.d_resolution_high``, else
    ``em_3d_reconstruction.resolution``; PDB: the ``REMARK   2 RESOLUTION.`` line. NMR models and files
    written without these records give ``None``.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if suffix == ".pdb":
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("REMARK   2 RESOLUTION."):
                try:
                    return float(line.split()[3])
                except (IndexError, ValueError):
                    return None
        return None
    import biotite.structure.io.pdbx as pdbx

    try:
        reader = pdbx.BinaryCIFFile if suffix == ".bcif" else pdbx.CIFFile
        block = reader.read(str(path)).block
    except Exception as exc:  # biotite's parsers raise many types
        raise ValueError(f"path: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    for category, key in _RESOLUTION_FIELDS:
        if category in block and key in block[category]:
            try:
                value = float(block[category][key].as_array()[0])
            except (TypeError, ValueError):
                continue
            if np.isfinite(value) and value > 0:
                return value
    return None


def chains_from_atom_array(atoms: struc.AtomArray) -> list[ProteinChain]:
    """Backbones of every protein chain, in file order; residues missing N, CA, C or O are dropped."""
    atoms = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero]
    chains = []
    for chain_id in dict.fromkeys(atoms.chain_id.tolist()):
        chain = atoms[atoms.chain_id == chain_id]
        coords, seq, ids = [], [], []
        for residue in struc.residue_iter(chain):
            names = residue.atom_name.tolist()
            if not all(a in names for a in ATOM_NAMES):
                continue
            coords.append(np.stack([residue.coord[names.index(a)] for a in ATOM_NAMES]))
            seq.append(three_to_one(str(residue.res_name[0])))
            ids.append(int(residue.res_id[0]))
        if coords:
            chains.append(
                ProteinChain(
                    np.asarray(coords, dtype=np.float32), "".join(seq), np.asarray(ids), str(chain_id)
                )
            )
    return chains


def read_backbone(path: str | os.PathLike[str], chain: str | None = None, model: int = 1) -> ProteinChain:
    """The backbone of one chain (``chain=None``: the first protein chain) of a structure file."""
    chains = chains_from_atom_array(read_structure(path, model))
    if not chains:
        raise ValueError(f"path: {path} holds no protein chain with complete backbone residues")
    if chain is None:
        return chains[0]
    for c in chains:
        if c.chain_id == chain:
            return c
    raise ValueError(f"chain: {chain!r} not in {path}; chains present: {[c.chain_id for c in chains]}")


def backbone_to_atom_array(
    coords: np.ndarray,
    sequence: str | None = None,
    chain_id: str = "A",
    residue_ids: np.ndarray | None = None,
) -> struc.AtomArray:
    """A biotite ``AtomArray`` of a backbone ``coords: (L, 4, 3)`` (N, CA, C, O).

    ``sequence`` (one-letter, length L) names the residues; without it every residue is GLY
    (the backbone-only residue). ``residue_ids`` default to 1..L.
    """
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"coords: expected shape (L, 4, 3), got {coords.shape}")
    length = len(coords)
    if sequence is not None and len(sequence) != length:
        raise ValueError(f"sequence: expected {length} residues, got {len(sequence)}")
    names = [_one_to_three(a) for a in sequence] if sequence is not None else ["GLY"] * length
    ids = np.arange(1, length + 1) if residue_ids is None else np.asarray(residue_ids)
    arr = struc.AtomArray(4 * length)
    arr.coord = coords.reshape(-1, 3)
    arr.chain_id[:] = chain_id
    arr.res_id = np.repeat(ids, 4)
    arr.res_name = np.repeat(names, 4)
    arr.atom_name = np.tile(list(ATOM_NAMES), length)
    arr.element = np.tile(["N", "C", "C", "O"], length)
    arr.hetero[:] = False
    arr.add_annotation("b_factor", float)
    arr.add_annotation("occupancy", float)
    arr.occupancy[:] = 1.0
    return arr


def _one_to_three(letter: str) -> str:
    try:
        return ProteinSequence.convert_letter_1to3(letter.upper())
    except KeyError:
        return "UNK"


def write_backbone(
    path: str | os.PathLike[str],
    coords: np.ndarray,
    sequence: str | None = None,
    chain_id: str = "A",
) -> Path:
    """Write a backbone ``(L, 4, 3)`` as PDB / mmCIF / BinaryCIF (by suffix); returns the path."""
    path = Path(path)
    _check_suffix(path)
    arr = backbone_to_atom_array(coords, sequence, chain_id)
    with atomic_path(path) as tmp:  # the temporary file keeps the suffix, which picks the format
        strucio.save_structure(str(tmp), arr)
    return path


def write_fasta(path: str | os.PathLike[str], records: Sequence[tuple[str, str]], width: int = 0) -> Path:
    """Write ``(header, sequence)`` records as FASTA (header without ``>``); ``width`` > 0 wraps sequence lines."""
    lines = []
    for header, sequence in records:
        if "\n" in header or "\n" in sequence:
            raise ValueError(f"records: a header or sequence holds a line break: {header[:40]!r}")
        lines.append(f">{header}")
        step = width if width > 0 else max(len(sequence), 1)
        lines.extend(sequence[i : i + step] for i in range(0, len(sequence), step))
    return write_text(path, "".join(f"{line}\n" for line in lines))
