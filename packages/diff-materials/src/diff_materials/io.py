"""The field's files: CIF (through pymatgen's ``CifWriter``) and a picture of a grid of structures, written
through :mod:`diffcore.io` (atomic)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from diffcore.io import atomic_path, write_text

from diff_materials.data.crystals import Crystal

__all__ = ["cif_text", "structure_grid", "write_cif", "write_cifs"]


def cif_text(crystal: Crystal) -> str:
    """The CIF of a crystal (P1, fractional coordinates), as pymatgen writes it."""
    from pymatgen.io.cif import CifWriter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(crystal.to_structure()))


def write_cif(path: str | os.PathLike[str], crystal: Crystal) -> Path:
    """Write one CIF file."""
    return write_text(path, cif_text(crystal))


def write_cifs(
    folder: str | os.PathLike[str], crystals: Sequence[Crystal], names: Sequence[str] = ()
) -> list[Path]:
    """``folder/<name>.cif`` for each crystal (names default to ``sample_000``, ...)."""
    out = Path(folder)
    names = list(names) or [f"sample_{i:03d}" for i in range(len(crystals))]
    return [write_cif(out / f"{n}.cif", c) for n, c in zip(names, crystals)]


def structure_grid(path: str | os.PathLike[str], crystals: Sequence[Crystal], columns: int = 4) -> Path:
    """A PNG of up to 16 crystals: each cell outlined and its atoms (coloured by element, sized by covalent
    radius) projected along c, with the formula above. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.core import Element

    crystals = list(crystals)[:16]
    rows = max(1, -(-len(crystals) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax in axes.flat:
        ax.axis("off")
    for ax, c in zip(axes.flat, crystals):
        a, b = c.lattice[0, :2], c.lattice[1, :2]
        corners = np.array([[0, 0], a, a + b, b, [0, 0]])
        ax.plot(corners[:, 0], corners[:, 1], "k-", lw=0.8)
        xy = (c.frac @ c.lattice)[:, :2]
        for z in np.unique(c.numbers):
            sel = c.numbers == z
            radius = Element.from_Z(int(z)).atomic_radius or 1.0
            ax.scatter(xy[sel, 0], xy[sel, 1], s=120 * float(radius) ** 2, color=cmap(int(z) % 20),
                       edgecolors="k", linewidths=0.5, label=Element.from_Z(int(z)).symbol)  # fmt: skip
        ax.set_title(c.formula, fontsize=9)
        ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="upper right", frameon=False)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)
