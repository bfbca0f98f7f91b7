"""Conditioning properties: scalar (any numeric column: ``heat_ref``, ``band_gap``, ...) and categorical
(``chemical_system``, ``space_group``), packed into one float vector per crystal.

Each property occupies a fixed number of columns of the packed vector (:func:`property_width`):

- a scalar: 1 column, its raw value (standardised inside the network by the training statistics);
- ``chemical_system``: :data:`NUM_TYPES` columns, the multi-hot of the elements present (column ``Z - 1``),
  e.g. ``"Ba-Ti-O"`` -> ones at Ba, Ti and O (MatterGen's chemical-system property, Zeni et al. 2025, App. C);
- ``space_group``: 1 column, the international number 1..230 (from the data where given, the ``spacegroup.number``
  column of CDVAE's CSV files, else pymatgen's ``SpacegroupAnalyzer`` at ``symprec = 0.1``).

An unknown or free property is NaN in all its columns; its mask (:func:`property_mask`) is False, and the network
uses that property's null embedding (classifier-free guidance's unconditional branch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from diff_materials.data.crystals import MAX_Z, NUM_TYPES, Crystal

__all__ = [
    "CATEGORICAL",
    "NUM_SPACE_GROUPS",
    "PropertyKind",
    "crystal_property_values",
    "parse_property_value",
    "property_kind",
    "property_mask",
    "property_slices",
    "property_width",
    "space_group_number",
]

PropertyKind = Literal["scalar", "chemical_system", "space_group"]
CATEGORICAL: tuple[str, ...] = ("chemical_system", "space_group")
NUM_SPACE_GROUPS = 230
SYMPREC = 0.1


def property_kind(name: str) -> PropertyKind:
    """``chemical_system`` and ``space_group`` are categorical; every other name is a scalar column."""
    return name if name in CATEGORICAL else "scalar"  # type: ignore[return-value]


def property_width(kind: PropertyKind) -> int:
    """Columns of a property of this kind in the packed vector."""
    return NUM_TYPES if kind == "chemical_system" else 1


def property_slices(kinds: Sequence[PropertyKind]) -> list[slice]:
    """The columns of each property in the packed vector, in order."""
    out, start = [], 0
    for kind in kinds:
        out.append(slice(start, start + property_width(kind)))
        start += property_width(kind)
    return out


def property_mask(values: Tensor, kinds: Sequence[PropertyKind]) -> Tensor:
    """``(B, D)`` packed values (NaN = free) -> ``(B, P)`` bool, True where the property is given."""
    return torch.stack([~torch.isnan(values[:, s.start]) for s in property_slices(kinds)], -1)


def space_group_number(crystal: Crystal) -> int:
    """The crystal's space group 1..230: its ``space_group`` property when the data give one, else pymatgen's
    ``SpacegroupAnalyzer(symprec=0.1)`` (CDVAE's and MatterGen's tolerance)."""
    given = crystal.properties.get("space_group", math.nan)
    if not math.isnan(given):
        return int(given)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    number = int(SpacegroupAnalyzer(crystal.to_structure(), symprec=SYMPREC).get_space_group_number())
    crystal.properties["space_group"] = float(number)  # computed once per crystal
    return number


def _multi_hot(numbers: Sequence[int]) -> list[float]:
    row = [0.0] * NUM_TYPES
    for z in set(int(z) for z in numbers):
        row[z - 1] = 1.0
    return row


def crystal_property_values(crystal: Crystal, names: Sequence[str]) -> list[float]:
    """The packed vector of ``names`` for a training crystal (NaN where a scalar is unknown)."""
    out: list[float] = []
    for name in names:
        kind = property_kind(name)
        if kind == "chemical_system":
            out += _multi_hot(crystal.numbers.tolist())
        elif kind == "space_group":
            out.append(float(space_group_number(crystal)))
        else:
            out.append(float(crystal.properties.get(name, math.nan)))
    return out


def parse_property_value(name: str, text: str) -> list[float]:
    """A conditioning value as written on the command line -> its packed columns.

    ``chemical_system``: element symbols joined by ``-`` (``Ba-Ti-O``); ``space_group``: an integer 1..230;
    a scalar: a number. Raises ``ValueError`` (one line, naming the property) on anything else.
    """
    kind = property_kind(name)
    text = text.strip()
    if kind == "chemical_system":
        from pymatgen.core.periodic_table import Element

        symbols = [s.strip() for s in text.split("-")]
        if not text or any(not s for s in symbols):
            raise ValueError(
                f"properties: chemical_system expected elements joined by '-' (Ba-Ti-O), got {text!r}"
            )
        numbers = []
        for s in symbols:
            if not Element.is_valid_symbol(s) or Element(s).Z > MAX_Z:
                raise ValueError(
                    f"properties: chemical_system {text!r} has an unknown element {s!r} (expected symbols of "
                    f"Z = 1..{MAX_Z})"
                )
            numbers.append(Element(s).Z)
        return _multi_hot(numbers)
    if kind == "space_group":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not number.is_integer() or not 1 <= number <= NUM_SPACE_GROUPS:
            raise ValueError(
                f"properties: space_group expected an integer in 1..{NUM_SPACE_GROUPS}, got {text!r}"
            )
        return [number]
    try:
        return [float(text)]
    except ValueError:
        raise ValueError(f"properties: {name} expected a number, got {text!r}") from None
