"""Train / held-out splits that do not leak, and de-duplication.

Martirossyan et al. (2025, "All that structure matches does not glitter") show that random splits of
Perov-5 put polymorphs of one composition on both sides, so a model can "predict" a held-out structure by
recalling its training polymorph; and that Carbon-24 is mostly duplicates. :func:`polymorph_grouped_split`
keeps every structure of one reduced formula on one side; :func:`deduplicate` removes structures that
pymatgen's ``StructureMatcher`` finds equal to an earlier one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from diff_materials.data.crystals import Crystal

__all__ = ["deduplicate", "leaked", "polymorph_grouped_split", "random_split"]


def _check_fraction(held_out: float) -> None:
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out: expected a fraction in (0, 1), got {held_out}")


def random_split(
    crystals: Sequence[Crystal], held_out: float = 0.2, seed: int = 0
) -> tuple[list[Crystal], list[Crystal]]:
    """``(train, held)``: a seeded random ``held_out`` fraction of the crystals held back (at least one)."""
    _check_fraction(held_out)
    order = np.random.default_rng(seed).permutation(len(crystals))
    n_held = max(1, round(held_out * len(crystals)))
    held = set(order[:n_held].tolist())
    return [c for i, c in enumerate(crystals) if i not in held], [crystals[i] for i in sorted(held)]


def polymorph_grouped_split(
    crystals: Sequence[Crystal], held_out: float = 0.2, seed: int = 0
) -> tuple[list[Crystal], list[Crystal]]:
    """``(train, held)`` with every crystal of one reduced formula on the same side.

    Whole formula groups are held back, in a seeded random order, until at least ``held_out`` of the crystals
    are held. No formula of ``held`` appears in ``train``.
    """
    _check_fraction(held_out)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(crystals):
        groups[c.formula].append(i)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    target = max(1, math.ceil(held_out * len(crystals)))
    held: set[int] = set()
    for k in order:
        if len(held) >= target:
            break
        held.update(groups[names[k]])
    return [c for i, c in enumerate(crystals) if i not in held], [crystals[i] for i in sorted(held)]


def deduplicate(crystals: Sequence[Crystal], **matcher_kwargs: float) -> list[Crystal]:
    """The crystals without those ``StructureMatcher`` (default tolerances, or ``matcher_kwargs``) finds equal
    to an earlier one of the same composition; the first of each group is kept, in input order."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(**matcher_kwargs)
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(crystals):
        by_formula[c.formula].append(i)
    keep: list[int] = []
    for indices in by_formula.values():
        structures = [crystals[i].to_structure() for i in indices]
        groups = matcher.group_structures(structures)
        first = {id(g[0]) for g in groups}
        keep.extend(i for i, s in zip(indices, structures) if id(s) in first)
    return [crystals[i] for i in sorted(keep)]


def leaked(held: Sequence[Crystal], train: Sequence[Crystal], volume_tolerance: float = 0.1) -> list[bool]:
    """For each held-out crystal: does ``StructureMatcher()`` find it equal to a training crystal (a duplicate
    that leaked across the split)? Only candidates of the same formula and number of atoms whose volumes per
    atom differ by less than ``volume_tolerance`` (relative) are compared, which keeps the Carbon-24 check
    (every crystal is carbon) affordable; duplicates whose volumes differ more are not found."""
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    index: dict[tuple[str, int], list[Crystal]] = defaultdict(list)
    for c in train:
        index[(c.formula, c.num_atoms)].append(c)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in held:
            v = c.volume / c.num_atoms
            candidates = [t for t in index[(c.formula, c.num_atoms)]
                          if abs(t.volume / t.num_atoms - v) < volume_tolerance * v]  # fmt: skip
            s = c.to_structure()
            out.append(any(matcher.fit(s, t.to_structure()) for t in candidates))
    return out
