"""The crystal representation: one :class:`Crystal` per structure, and the graph batch the models read.

A crystal is its lattice ``L`` (3, 3) in angstrom (rows are the lattice vectors a, b, c, pymatgen's
convention), fractional coordinates ``frac`` (N, 3) in [0, 1) and atomic numbers ``numbers`` (N,).
Cartesian positions are ``frac @ L``.

A batch (:func:`collate_crystals`) concatenates the atoms of all crystals, the torch-geometric way::

    {"frac": (M, 3), "types": (M,) int64 atom-type ids (Z - 1), "batch": (M,) crystal index,
     "num_atoms": (B,), "lattice": (B, 3, 3), "properties": (B, D) float, "property_mask": (B, P) bool}

``properties`` packs the ``P`` named properties into ``D`` columns (one per scalar, 100 for a chemical system,
one for a space group: :mod:`diff_materials.properties`).

with ``M = sum(num_atoms)``. Atom types are ``Z - 1`` for Z in 1..100 (:data:`NUM_TYPES`); the absorbing
process adds a mask type, id :data:`NUM_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "MAX_Z",
    "NUM_TYPES",
    "Crystal",
    "CrystalDataset",
    "collate_crystals",
]

MAX_Z = 100
NUM_TYPES = MAX_Z
"""Atom types are atomic numbers 1..100 stored as ids 0..99."""


@dataclass
class Crystal:
    """One ordered periodic structure.

    Attributes:
        lattice: (3, 3) float, rows are the lattice vectors in angstrom.
        frac: (N, 3) float fractional coordinates in [0, 1).
        numbers: (N,) int atomic numbers in 1..100.
        material_id: a name for files and reports (``<material_id>_<k>.cif``).
        properties: named scalar properties (``heat_ref``, ``dir_gap``, ...).
    """

    lattice: np.ndarray
    frac: np.ndarray
    numbers: np.ndarray
    material_id: str = ""
    properties: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lattice = np.asarray(self.lattice, dtype=np.float64).reshape(3, 3)
        self.frac = np.asarray(self.frac, dtype=np.float64).reshape(-1, 3)
        self.frac = self.frac - np.floor(self.frac)
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        if len(self.numbers) != len(self.frac) or len(self.numbers) == 0:
            raise ValueError(
                f"numbers, frac: expected the same number (>= 1) of atoms, got {len(self.numbers)} and "
                f"{len(self.frac)}"
            )
        if self.numbers.min() < 1 or self.numbers.max() > MAX_Z:
            raise ValueError(
                f"numbers: expected atomic numbers in 1..{MAX_Z}, got {sorted(set(self.numbers))}"
            )

    @property
    def num_atoms(self) -> int:
        return len(self.numbers)

    @property
    def volume(self) -> float:
        """Cell volume in cubic angstrom."""
        return float(abs(np.linalg.det(self.lattice)))

    @classmethod
    def from_structure(
        cls, structure: Any, material_id: str = "", properties: Mapping[str, float] | None = None
    ) -> Crystal:
        """From a pymatgen ``Structure``; a disordered structure (partial occupancies) is refused."""
        if not structure.is_ordered:
            raise ValueError(
                f"structure {material_id or structure.formula}: disordered (partial occupancies)"
            )
        numbers = [site.specie.Z for site in structure]
        return cls(
            structure.lattice.matrix,
            structure.frac_coords,
            numbers,
            material_id,
            dict(properties or {}),
        )

    def to_structure(self) -> Any:
        """A pymatgen ``Structure``."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.numbers.tolist(), self.frac, coords_are_cartesian=False)

    @property
    def formula(self) -> str:
        """Reduced formula, e.g. ``SrTiO3``."""
        return self.composition.reduced_formula

    @property
    def composition(self) -> Any:
        from collections import Counter

        from pymatgen.core import Composition, Element

        return Composition({Element.from_Z(int(z)): n for z, n in Counter(self.numbers.tolist()).items()})


class CrystalDataset(Dataset):
    """A list of :class:`Crystal` as a torch dataset; ``properties`` names the properties batches carry (scalar
    columns and the categorical ``chemical_system`` / ``space_group``, computed here once per crystal)."""

    def __init__(self, crystals: Sequence[Crystal], properties: Sequence[str] = ()) -> None:
        from diff_materials.properties import crystal_property_values, property_kind, property_mask

        self.crystals = list(crystals)
        self.properties = tuple(properties)
        kinds = [property_kind(p) for p in self.properties]
        rows = [crystal_property_values(c, self.properties) for c in self.crystals]
        self._values = torch.tensor(rows, dtype=torch.float32).reshape(len(self.crystals), -1)
        self._mask = (
            property_mask(self._values, kinds)
            if kinds
            else torch.zeros(len(self.crystals), 0, dtype=torch.bool)
        )

    def __len__(self) -> int:
        return len(self.crystals)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.crystals[i]
        return {
            "lattice": torch.as_tensor(c.lattice, dtype=torch.float32),
            "frac": torch.as_tensor(c.frac, dtype=torch.float32),
            "types": torch.as_tensor(c.numbers - 1, dtype=torch.int64),
            "properties": self._values[i],
            "property_mask": self._mask[i],
        }


def collate_crystals(items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate dataset items into one graph batch (see the module docstring).

    A property that is NaN for an item (unknown) gets ``property_mask = False`` and the value 0 (items without a
    ``property_mask`` have one property per column).
    """
    if not items:
        raise ValueError("items: expected at least one crystal")
    num_atoms = torch.tensor([len(it["types"]) for it in items], dtype=torch.int64)
    props = torch.stack([it.get("properties", torch.zeros(0)) for it in items])
    known = ~torch.isnan(props)
    mask = torch.stack([it["property_mask"] for it in items]) if "property_mask" in items[0] else known
    return {
        "frac": torch.cat([it["frac"] for it in items]),
        "types": torch.cat([it["types"] for it in items]),
        "batch": torch.repeat_interleave(torch.arange(len(items)), num_atoms),
        "num_atoms": num_atoms,
        "lattice": torch.stack([it["lattice"] for it in items]),
        "properties": torch.where(known, props, torch.zeros_like(props)),
        "property_mask": mask,
    }
