"""Real crystals from local files: CDVAE-style CSV files and folders of CIF files.

Both readers return a :class:`LoadResult`: the crystals read, and one line per entry skipped (file, line or
row, and why: unparsable CIF, disordered sites, no atoms, an element beyond Z = 100), so that a bad entry is
reported and never silently dropped. Nothing is downloaded.

The CDVAE CSV format (Xie et al. 2022; the Perov-5, Carbon-24 and MP-20 splits) has a header row with the
columns ``material_id`` and ``cif`` (a CIF text) and any number of numeric property columns
(``heat_ref``, ``dir_gap``, ``energy_per_atom``, ...), which become :attr:`Crystal.properties`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from diff_materials.data.crystals import Crystal

__all__ = ["LoadResult", "read_cdvae_csv", "read_cif_folder", "read_crystals"]

CIF_SUFFIXES = (".cif", ".mcif")
_NOT_PROPERTIES = {"", "material_id", "cif", "formula", "pretty_formula", "elements", "spacegroup.number"}


@dataclass
class LoadResult:
    """Crystals read from a file or folder, and the entries skipped (``"<file>:<line>: <reason>"``)."""

    crystals: list[Crystal] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def report(self, stream=None) -> None:
        """Print how many were read and every skipped entry (to standard error by default)."""
        stream = stream or sys.stderr
        print(f"read {len(self.crystals)} crystals, skipped {len(self.skipped)}", file=stream)
        for line in self.skipped:
            print(f"  skipped {line}", file=stream)


def _structure_from_cif(text: str):
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about rounded occupancies and missing symmetry tags
        return Structure.from_str(text, fmt="cif")


def _crystal(text: str, material_id: str, properties: dict[str, float]) -> Crystal:
    try:
        structure = _structure_from_cif(text)
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError... on a bad CIF
        raise ValueError(
            f"unreadable CIF ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if len(structure) == 0:
        raise ValueError("no atoms")
    if not structure.is_ordered:
        raise ValueError("disordered sites (partial occupancies)")
    if max(site.specie.Z for site in structure) > 100:
        raise ValueError("an element beyond Z = 100")
    return Crystal.from_structure(structure, material_id, properties)


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_cdvae_csv(path: str | os.PathLike[str], limit: int | None = None) -> LoadResult:
    """Read a CDVAE-style CSV (columns ``material_id``, ``cif`` and numeric properties).

    ``limit``: stop after this many crystals. Rows that cannot be read are skipped and reported with their
    line number. Raises ``FileNotFoundError`` / ``ValueError`` (naming the file) when the file is missing or
    lacks the ``cif`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: {path} is not a file (expected a CDVAE-style CSV)")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out = LoadResult()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "cif" not in fields:
            raise ValueError(f"path: {path}:1 has columns {fields}, expected a 'cif' column (CDVAE format)")
        props = [c for c in fields if c not in _NOT_PROPERTIES]
        start = 2
        for row_number, row in enumerate(reader, start=1):
            line = start
            start = reader.line_num + 1
            material_id = (row.get("material_id") or "").strip() or f"row{row_number}"
            values = {p: _float(row.get(p) or "") for p in props}
            values = {k: v for k, v in values.items() if not math.isnan(v)}
            space_group = _float(
                row.get("spacegroup.number") or ""
            )  # MP-20's column: the space_group property
            if not math.isnan(space_group):
                values["space_group"] = space_group
            try:
                out.crystals.append(_crystal(row.get("cif") or "", material_id, values))
            except ValueError as exc:
                out.skipped.append(f"{path}:{line} ({material_id}): {exc}")
            if limit is not None and len(out.crystals) >= limit:
                break
    return out


def read_cif_folder(folder: str | os.PathLike[str], limit: int | None = None) -> LoadResult:
    """Read every ``*.cif`` file of ``folder`` (sorted by name; not recursive); the material id is the file
    stem. Unreadable files are skipped and reported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"path: {folder} is not a folder (expected a folder of CIF files)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CIF_SUFFIXES and p.is_file())
    out = LoadResult()
    if not files:
        raise ValueError(f"path: {folder} holds no .cif files")
    for p in files:
        try:
            out.crystals.append(_crystal(p.read_text(encoding="utf-8", errors="replace"), p.stem, {}))
        except (ValueError, OSError) as exc:
            out.skipped.append(f"{p}: {exc}")
        if limit is not None and len(out.crystals) >= limit:
            break
    return out


def read_crystals(path: str | os.PathLike[str], limit: int | None = None) -> LoadResult:
    """A CDVAE CSV file, a single CIF file or a folder of CIF files, by what ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return read_cif_folder(p, limit)
    if p.suffix.lower() == ".csv":
        return read_cdvae_csv(p, limit)
    if p.suffix.lower() in CIF_SUFFIXES and p.is_file():
        out = LoadResult()
        try:
            out.crystals.append(_crystal(p.read_text(encoding="utf-8", errors="replace"), p.stem, {}))
        except ValueError as exc:
            out.skipped.append(f"{p}: {exc}")
        return out
    raise FileNotFoundError(f"path: {p} is not a CSV file, a CIF file or a folder of CIF files")
