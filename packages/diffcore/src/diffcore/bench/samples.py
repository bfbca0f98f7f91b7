"""The files a benchmark wrote, as the report shows them: what kind each is, and the atoms or points of a
structure (PDB, mmCIF, PLY) for a small preview.

The readers take only what a preview needs (coordinates, chains, C-alpha atoms) and no field library:
``diffcore`` must not depend on biotite or plyfile. A file they cannot read gets no preview, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

SampleKind = Literal["image", "audio", "video", "structure", "text", "file"]

KINDS: dict[str, SampleKind] = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp"), "image"),
    **dict.fromkeys((".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a"), "audio"),
    **dict.fromkeys((".mp4", ".webm", ".ogv", ".mov", ".m4v"), "video"),
    **dict.fromkeys((".pdb", ".cif", ".mmcif", ".ply"), "structure"),
    **dict.fromkeys((".txt", ".fasta", ".fa", ".csv", ".tsv", ".md", ".log", ".xyz"), "text"),
}
"""File extension -> how the report shows the file (``<img>``, ``<audio>``, ``<video>``, a preview, text)."""

PREVIEW_MAX_BYTES = 32 * 2**20
"""Larger structures get a download link only: a preview should cost a fraction of a second."""


def sample_kind(path: str | Path) -> SampleKind:
    """How the report shows ``path``, from its extension (``file``: a plain link)."""
    return KINDS.get(Path(path).suffix.lower(), "file")


@dataclass(frozen=True)
class Structure:
    """Coordinates for a preview.

    Attributes:
        chains: one ``(N_i, 3)`` array per chain, in file order.
        trace: True when the points are C-alpha atoms, drawn joined along each chain; False for a cloud
            (all atoms of a structure without C-alpha, or a PLY's vertices).
    """

    chains: list[np.ndarray]
    trace: bool


def read_structure(path: Path) -> Structure | None:
    """The coordinates of a PDB, mmCIF or PLY file; None when it is too large, empty or not understood."""
    try:
        if not path.is_file() or path.stat().st_size > PREVIEW_MAX_BYTES:
            return None
        suffix = path.suffix.lower()
        if suffix == ".ply":
            points = read_ply_vertices(path.read_bytes())
            return Structure([points], trace=False) if points is not None and len(points) else None
        text = path.read_text(errors="replace")
        atoms = _cif_atoms(text) if suffix in (".cif", ".mmcif") else _pdb_atoms(text)
    except (OSError, ValueError, IndexError):
        return None
    return _as_structure(atoms)


Atom = tuple[str, str, float, float, float]  # chain, atom name, x, y, z


def _as_structure(atoms: list[Atom]) -> Structure | None:
    if not atoms:
        return None
    ca = [a for a in atoms if a[1] == "CA"]
    chosen = ca or atoms
    chains: dict[str, list[tuple[float, float, float]]] = {}
    for chain, _, x, y, z in chosen:
        chains.setdefault(chain, []).append((x, y, z))
    return Structure([np.asarray(c, dtype=np.float64) for c in chains.values()], trace=bool(ca))


def _pdb_atoms(text: str) -> list[Atom]:
    """ATOM / HETATM records of the first model (fixed columns of the PDB format, version 3.3)."""
    atoms: list[Atom] = []
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if line.startswith(("ATOM  ", "HETATM")):
            x, y, z = float(line[30:38]), float(line[38:46]), float(line[46:54])
            atoms.append((line[21:22], line[12:16].strip(), x, y, z))
    return atoms


def _cif_atoms(text: str) -> list[Atom]:
    """The ``_atom_site`` loop of an mmCIF file, first model only (tokens split on white space)."""
    lines = text.splitlines()
    start = next((k for k, line in enumerate(lines) if line.strip().startswith("_atom_site.")), None)
    if start is None:
        return []
    columns: list[str] = []
    i = start
    while i < len(lines) and lines[i].strip().startswith("_atom_site."):
        columns.append(lines[i].strip().split()[0].removeprefix("_atom_site."))
        i += 1
    col = {name: k for k, name in enumerate(columns)}
    xyz = [col["Cartn_x"], col["Cartn_y"], col["Cartn_z"]]
    name_col = col.get("label_atom_id", col.get("auth_atom_id"))
    chain_col = col.get("label_asym_id", col.get("auth_asym_id"))
    model_col = col.get("pdbx_PDB_model_num")
    atoms: list[Atom] = []
    first_model = None
    for line in lines[i:]:
        if not line.strip() or line.startswith(("#", "_", "loop_", "data_")):
            break
        row = line.split()
        if model_col is not None:
            first_model = first_model or row[model_col]
            if row[model_col] != first_model:
                break
        name = row[name_col].strip("\"'") if name_col is not None else ""
        chain = row[chain_col] if chain_col is not None else ""
        atoms.append((chain, name, float(row[xyz[0]]), float(row[xyz[1]]), float(row[xyz[2]])))
    return atoms


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def read_ply_vertices(data: bytes) -> np.ndarray | None:
    """The ``(N, 3)`` x, y, z of a PLY file's vertices (ASCII or binary), when ``vertex`` is its first
    element and has no list property; None otherwise."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        return None
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[data.index(b"\n", end) + 1 :]
    fmt, count, props, element = "", 0, [], None
    for line in header:
        words = line.split()
        if words[:1] == ["format"]:
            fmt = words[1]
        elif words[:1] == ["element"]:
            if element == "vertex":
                break  # the vertex element's properties are complete
            element = words[1]
            count = int(words[2]) if element == "vertex" else count
        elif words[:1] == ["property"] and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                return None
            props.append((words[2], _PLY_TYPES[words[1]]))
    names = [p[0] for p in props]
    if element is None or not {"x", "y", "z"} <= set(names) or _first_element(header) != "vertex":
        return None
    if fmt == "ascii":
        rows = body.decode("ascii", errors="replace").splitlines()[:count]
        table = np.array([[float(v) for v in r.split()[: len(names)]] for r in rows], dtype=np.float64)
        return table[:, [names.index("x"), names.index("y"), names.index("z")]]
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    if order is None:
        return None
    dtype = np.dtype([(n, order + t) for n, t in props])
    table = np.frombuffer(body, dtype=dtype, count=count)
    return np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float64)


def _first_element(header: list[str]) -> str | None:
    """The name of the first ``element`` declared in a PLY header."""
    return next((line.split()[1] for line in header if line.startswith("element ")), None)
