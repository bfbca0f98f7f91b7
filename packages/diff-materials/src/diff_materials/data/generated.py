"""The default data set: prototype crystals built offline from ionic radii, deterministic from a seed.

Each prototype places ions on the sites of a known structure type and sizes the cell so that the nearest
cation-anion pair touches, ``d = r_cation + r_anion`` with the radii of pymatgen's ``Species.ionic_radius``
(Shannon's radii for the stated oxidation states), as a crystal chemist sizes a first guess:

- ``perovskite`` ABX3, cubic Pm-3m (5 atoms): B at the body centre, X on the face centres, A on the corner;
  ``a = max(2 (r_B + r_X), sqrt(2) (r_A + r_X))``; only combinations with Goldschmidt's tolerance factor
  ``t = (r_A + r_X) / (sqrt(2) (r_B + r_X))`` in [0.8, 1.1] (Goldschmidt 1926) are kept.
- ``rocksalt`` AX, Fm-3m primitive cell (2 atoms): ``a = 2 (r_A + r_X)``.
- ``cscl`` AX, Pm-3m (2 atoms): ``a = 2 (r_A + r_X) / sqrt(3)``.
- ``zincblende`` AX, F-43m primitive cell (2 atoms): ``a = 4 (r_A + r_X) / sqrt(3)``.
- ``fluorite`` AX2, Fm-3m primitive cell (3 atoms): ``a = 4 (r_A + r_X) / sqrt(3)``.

Every composition is charge balanced by construction. Properties carried: ``tolerance_factor``
(perovskites; NaN otherwise) and ``volume_per_atom`` (cubic angstrom). ``jitter`` > 0 displaces every atom by
a Gaussian of that many angstrom and strains the cell by ``jitter / 4`` (relative), so that structures are no
longer exactly the ideal prototypes.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from diff_materials.data.crystals import Crystal

__all__ = ["KINDS", "GeneratedConfig", "generate_crystals", "prototype"]

KINDS = ("perovskite", "rocksalt", "cscl", "zincblende", "fluorite")

# (A, charge), (B, charge), (X, charge) families of charge-balanced ABX3
_PEROVSKITE_FAMILIES = [
    (["Ca", "Sr", "Ba", "Pb", "Cd"], 2, ["Ti", "Zr", "Hf", "Sn", "Mn", "Mo", "Ce", "Ru", "Ge", "V"], 4, ["O"], -2),
    (["Na", "K", "Rb", "Ag", "Tl"], 1, ["Nb", "Ta", "V", "Sb", "Mo"], 5, ["O"], -2),
    (["La", "Pr", "Nd", "Y", "Bi", "Sm", "Gd"], 3, ["Al", "Ga", "Fe", "Cr", "Sc", "Co", "In", "Mn", "Ti", "V"], 3,
     ["O"], -2),
    (["Na", "K", "Rb", "Cs", "Tl"], 1, ["Mg", "Zn", "Ni", "Co", "Mn", "Fe", "Cd", "Cu", "Pb", "Sn"], 2,
     ["F", "Cl"], -1),
]  # fmt: skip
_AX_FAMILIES = [
    (["Li", "Na", "K", "Rb", "Cs", "Ag"], 1, ["F", "Cl", "Br", "I"], -1),
    (["Mg", "Ca", "Sr", "Ba", "Zn", "Cd", "Ni", "Mn", "Co", "Fe"], 2, ["O", "S", "Se", "Te"], -2),
]
_FLUORITE_FAMILIES = [
    (["Ca", "Sr", "Ba", "Cd", "Pb"], 2, ["F", "Cl"], -1),
    (["Zr", "Hf", "Ce", "Th", "U"], 4, ["O"], -2),
]

_FCC = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


@dataclass(frozen=True)
class GeneratedConfig:
    """The default generated set.

    Attributes:
        kinds: prototypes to draw from (see :data:`KINDS`).
        num_crystals: how many to return (0: every combination of the kinds, in a seeded order).
        jitter: Gaussian displacement of the atoms in angstrom (and cell strain ``jitter / 4``); 0 keeps the
            ideal prototypes.
        seed: seeds the order and the jitter.
    """

    kinds: tuple[str, ...] = ("perovskite",)
    num_crystals: int = 0
    jitter: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds: expected a non-empty subset of {KINDS}, got {self.kinds}")
        if self.num_crystals < 0:
            raise ValueError(f"num_crystals: expected >= 0, got {self.num_crystals}")
        if not self.jitter >= 0:
            raise ValueError(f"jitter: expected >= 0 angstrom, got {self.jitter}")


def _radius(element: str, charge: int) -> float:
    from pymatgen.core import Species

    with warnings.catch_warnings():  # "no default radius, using low-spin data": the tabulated value is fine
        warnings.simplefilter("ignore")
        r = Species(element, charge).ionic_radius
    if r is None:
        raise ValueError(f"no ionic radius for {element}{charge:+d}")
    return float(r)


def prototype(
    kind: str, cation: str, anion: str, b_site: str | None = None, charges: tuple[int, ...] = ()
) -> Crystal:
    """One ideal prototype crystal (see the module docstring). ``charges``: oxidation states of
    (cation, [b_site,] anion)."""
    from pymatgen.core import Element

    z = {e: Element(e).Z for e in (cation, anion, b_site) if e}
    if kind == "perovskite":
        if b_site is None:
            raise ValueError("b_site: a perovskite needs a B-site element")
        r_a, r_b, r_x = (_radius(e, q) for e, q in zip((cation, b_site, anion), charges))
        a = max(2 * (r_b + r_x), math.sqrt(2) * (r_a + r_x))
        frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        numbers = [z[cation], z[b_site], z[anion], z[anion], z[anion]]
        tol = (r_a + r_x) / (math.sqrt(2) * (r_b + r_x))
        lattice = a * np.eye(3)
        props = {"tolerance_factor": tol}
    else:
        r = _radius(cation, charges[0]) + _radius(anion, charges[-1])
        props = {"tolerance_factor": math.nan}
        if kind == "rocksalt":
            lattice, frac, numbers = 2 * r * _FCC, [[0, 0, 0], [0.5, 0.5, 0.5]], [z[cation], z[anion]]
        elif kind == "cscl":
            lattice = 2 * r / math.sqrt(3) * np.eye(3)
            frac, numbers = [[0, 0, 0], [0.5, 0.5, 0.5]], [z[cation], z[anion]]
        elif kind == "zincblende":
            lattice, frac = 4 * r / math.sqrt(3) * _FCC, [[0, 0, 0], [0.25, 0.25, 0.25]]
            numbers = [z[cation], z[anion]]
        elif kind == "fluorite":
            lattice = 4 * r / math.sqrt(3) * _FCC
            frac = [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]]
            numbers = [z[cation], z[anion], z[anion]]
        else:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    crystal = Crystal(lattice, frac, numbers, material_id="")
    crystal.material_id = f"{kind}-{crystal.formula}"
    crystal.properties = props | {"volume_per_atom": crystal.volume / crystal.num_atoms}
    return crystal


def _combinations(kind: str) -> list[tuple]:
    if kind == "perovskite":
        return [
            (a, x, b, (qa, qb, qx))
            for As, qa, Bs, qb, Xs, qx in _PEROVSKITE_FAMILIES
            for a, b, x in itertools.product(As, Bs, Xs)
        ]
    families = _FLUORITE_FAMILIES if kind == "fluorite" else _AX_FAMILIES
    return [(a, x, None, (qa, qx)) for As, qa, Xs, qx in families for a, x in itertools.product(As, Xs)]


def generate_crystals(config: GeneratedConfig | None = None) -> list[Crystal]:
    """The generated set: every charge-balanced combination of ``config.kinds`` (perovskites filtered by the
    tolerance factor), in an order drawn from ``config.seed``, the first ``num_crystals`` of them."""
    config = config or GeneratedConfig()
    crystals = []
    for kind in config.kinds:
        for cation, anion, b_site, charges in _combinations(kind):
            try:
                c = prototype(kind, cation, anion, b_site, charges)
            except ValueError:
                continue  # an oxidation state without a tabulated radius
            if kind == "perovskite" and not 0.8 <= c.properties["tolerance_factor"] <= 1.1:
                continue
            crystals.append(c)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(crystals))
    crystals = [crystals[i] for i in order]
    if config.num_crystals:
        if config.num_crystals > len(crystals):
            raise ValueError(
                f"num_crystals: {config.num_crystals} exceeds the {len(crystals)} distinct prototypes of "
                f"{config.kinds}"
            )
        crystals = crystals[: config.num_crystals]
    if config.jitter > 0:
        crystals = [_jittered(c, config.jitter, rng) for c in crystals]
    return crystals


def _jittered(c: Crystal, jitter: float, rng: np.random.Generator) -> Crystal:
    strain = np.eye(3) + rng.normal(0.0, jitter / 4, (3, 3))
    lattice = c.lattice @ ((strain + strain.T) / 2)
    cart = c.frac @ lattice + rng.normal(0.0, jitter, c.frac.shape)
    out = Crystal(lattice, cart @ np.linalg.inv(lattice), c.numbers, c.material_id, dict(c.properties))
    out.properties["volume_per_atom"] = out.volume / out.num_atoms
    return out
