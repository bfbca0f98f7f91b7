"""The field's measures of crystal generation and structure prediction, offline, as the anchors define them.

Crystal structure prediction (CDVAE, Xie et al. 2022; DiffCSP, Jiao et al. 2023): a prediction *matches* its
reference when pymatgen's ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` finds them equal; the match
rate is the fraction of references with a matching prediction and the RMSE the mean, over matched references,
of the matcher's RMS displacement (normalised by ``(V / N)^(1/3)``); with ``k`` predictions per reference the
best (smallest RMS) matching one counts (:func:`csp_metrics`).

Generation (CDVAE Sec. 5 and App. F):

- structural validity: every interatomic distance (over periodic images) at least 0.5 angstrom and the cell
  volume at least 0.1 cubic angstrom (:func:`structure_valid`);
- compositional validity: SMACT's charge neutrality with Pauling's electronegativity test, single elements
  and all-metal alloys counted valid (:func:`smact_valid`);
- coverage COV-R (recall: the fraction of reference crystals with a generated one within both cutoffs) and
  COV-P (precision: the fraction of generated crystals with a reference one within both) on CrystalNN site
  fingerprints averaged over sites (matminer's ``CrystalNNFingerprint.from_preset("ops")``) and Magpie
  composition fingerprints (``ElementProperty.from_preset("magpie")``, standardised by the reference set),
  with CDVAE's per-dataset cutoffs :data:`COV_CUTOFFS` (:func:`coverage`);
- Wasserstein distances of the density (g/cm^3) and of the number of elements between generated and
  reference crystals (:func:`property_wasserstein`);
- uniqueness (the fraction of valid samples not matched by an earlier one) and novelty (the fraction of valid
  samples that match no training crystal), both with ``StructureMatcher()`` defaults (:func:`uniqueness`,
  :func:`novelty`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np

from diff_materials.data.crystals import Crystal

__all__ = [
    "COV_CUTOFFS",
    "MATCHER_SETTINGS",
    "coverage",
    "csp_metrics",
    "generation_metrics",
    "match_rms",
    "novelty",
    "property_wasserstein",
    "smact_valid",
    "structure_valid",
    "uniqueness",
]

MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}
COV_CUTOFFS = {"perov_5": (0.4, 10.0), "carbon_24": (0.2, 4.0), "mp_20": (0.4, 10.0)}
"""CDVAE's (structure, composition) fingerprint-distance cutoffs per dataset."""


def _matcher(**kwargs):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**(MATCHER_SETTINGS | kwargs))


def structure_valid(crystal: Crystal, min_distance: float = 0.5, min_volume: float = 0.1) -> bool:
    """All pairwise distances (over periodic images, an atom with its own images too) at least
    ``min_distance`` angstrom, and volume at least ``min_volume`` (CDVAE's structural validity)."""
    if not np.isfinite(crystal.lattice).all() or not np.isfinite(crystal.frac).all():
        return False
    if crystal.volume < min_volume:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = crystal.to_structure()
        if len(structure) == 1:
            return min(structure.lattice.abc) >= min_distance
        dist = structure.distance_matrix
    dist = dist + np.diag(np.full(len(dist), np.inf))
    self_images = min(_shortest_lattice_vector(crystal.lattice), np.inf)
    return bool(dist.min() >= min_distance and self_images >= min_distance)


def _shortest_lattice_vector(lattice: np.ndarray) -> float:
    r = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    r = r[np.abs(r).sum(1) > 0]
    return float(np.linalg.norm(r @ lattice, axis=1).min())


def smact_valid(crystal: Crystal | Sequence[int], counts: Sequence[int] | None = None) -> bool:
    """SMACT compositional validity as CDVAE computes it: some assignment of SMACT oxidation states is
    charge neutral for the (gcd-reduced) stoichiometry and passes Pauling's electronegativity test; a single
    element and an all-metal composition are valid.

    crystal: a :class:`Crystal`, or atomic numbers with ``counts``."""
    import smact
    from smact.screening import pauling_test

    if isinstance(crystal, Crystal):
        zs, cs = np.unique(crystal.numbers, return_counts=True)
    else:
        zs, cs = np.asarray(crystal), np.asarray(counts)
    g = math.gcd(*cs.tolist())
    cs = cs // g
    from pymatgen.core import Element

    symbols = tuple(Element.from_Z(int(z)).symbol for z in zs)
    if len(symbols) == 1:
        return True
    if all(s in smact.metals for s in symbols):
        return True
    space = smact.element_dictionary(symbols)
    elements = [space[s] for s in symbols]
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states or [0] for e in elements]):
        if sum(o * c for o, c in zip(ox, cs.tolist())) != 0:
            continue
        try:
            if pauling_test(ox, enegs):
                return True
        except TypeError:  # an element without a Pauling electronegativity: the test does not apply
            return True
    return False


def match_rms(prediction: Crystal, reference: Crystal) -> float | None:
    """The normalised RMS displacement of ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` between a
    prediction and its reference, or None when they do not match (or the prediction is not valid)."""
    if not structure_valid(prediction):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rms = _matcher().get_rms_dist(prediction.to_structure(), reference.to_structure())
        except Exception:  # pymatgen fails on degenerate lattices of bad samples
            return None
    return None if rms is None else float(rms[0])


def _map(fn, items: list, processes: int) -> list:
    if processes <= 1 or len(items) < 2 * processes:
        return [fn(*it) for it in items]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(fn, *zip(*items), chunksize=max(1, len(items) // (4 * processes))))


def csp_metrics(
    predictions: Sequence[Sequence[Crystal]], references: Sequence[Crystal], processes: int = 1
) -> dict[str, float]:
    """Match rate and RMSE of crystal structure prediction, best of the first prediction and best of all
    ``k`` predictions per reference. ``predictions[i]``: the ``k`` predictions for ``references[i]``.
    ``processes``: match in that many worker processes.

    Returns ``match_rate@1``, ``rmse@1``, ``match_rate@k``, ``rmse@k`` (RMSE NaN when nothing matched) and
    ``k``."""
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"predictions, references: expected one list of predictions per reference, got {len(predictions)} "
            f"and {len(references)}"
        )
    k = min(len(p) for p in predictions)
    flat = _map(
        match_rms, [(p, ref) for preds, ref in zip(predictions, references) for p in preds[:k]], processes
    )
    best1, bestk = [], []
    for i in range(len(references)):
        rms = flat[i * k : (i + 1) * k]
        best1.append(rms[0])
        matched = [r for r in rms if r is not None]
        bestk.append(min(matched) if matched else None)

    def rate(values):
        return sum(v is not None for v in values) / len(values)

    def rmse(values):
        m = [v for v in values if v is not None]
        return float(np.mean(m)) if m else math.nan

    return {"match_rate@1": rate(best1), "rmse@1": rmse(best1), f"match_rate@{k}": rate(bestk),
            f"rmse@{k}": rmse(bestk), "k": float(k)}  # fmt: skip


def _structure_fingerprint(crystal: Crystal) -> np.ndarray | None:
    from matminer.featurizers.site import CrystalNNFingerprint

    fp = _structure_fingerprint.featurizer  # type: ignore[attr-defined]
    if fp is None:
        fp = CrystalNNFingerprint.from_preset("ops")
        _structure_fingerprint.featurizer = fp  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            s = crystal.to_structure()
            return np.mean([fp.featurize(s, i) for i in range(len(s))], axis=0)
        except Exception:  # CrystalNN fails on degenerate geometries
            return None


_structure_fingerprint.featurizer = None  # type: ignore[attr-defined]


def _composition_fingerprints(crystals: Sequence[Crystal]) -> np.ndarray:
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie", impute_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([featurizer.featurize(c.composition) for c in crystals], dtype=np.float64)


def coverage(
    generated: Sequence[Crystal],
    reference: Sequence[Crystal],
    structure_cutoff: float = 0.4,
    composition_cutoff: float = 10.0,
    processes: int = 1,
) -> dict[str, float]:
    """COV-R and COV-P (CDVAE App. F) of ``generated`` against ``reference`` with the given fingerprint
    cutoffs (:data:`COV_CUTOFFS`; Perov-5's by default). Crystals whose fingerprint cannot be computed are left
    out (generated) or counted as uncovered (reference)."""
    from scipy.spatial.distance import cdist

    prints = _map(_structure_fingerprint, [(c,) for c in [*generated, *reference]], processes)
    gen_s, ref_s = prints[: len(generated)], prints[len(generated) :]
    keep_g = [i for i, f in enumerate(gen_s) if f is not None]
    keep_r = [i for i, f in enumerate(ref_s) if f is not None]
    if not keep_g or not keep_r:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    comp_r = _composition_fingerprints([reference[i] for i in keep_r])
    comp_g = _composition_fingerprints([generated[i] for i in keep_g])
    mean, std = comp_r.mean(0), comp_r.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    comp_d = cdist((comp_g - mean) / std, (comp_r - mean) / std)
    struct_d = cdist(np.array([gen_s[i] for i in keep_g]), np.array([ref_s[i] for i in keep_r]))
    close = (struct_d <= structure_cutoff) & (comp_d <= composition_cutoff)
    return {
        "cov_recall": float(close.any(0).sum() / len(reference)),
        "cov_precision": float(close.any(1).sum() / len(generated)),
    }


def _density(crystal: Crystal) -> float:
    from pymatgen.core import Element

    mass = sum(float(Element.from_Z(int(z)).atomic_mass) for z in crystal.numbers)
    return mass * 1.66053906660 / crystal.volume  # amu / A^3 -> g / cm^3


def property_wasserstein(generated: Sequence[Crystal], reference: Sequence[Crystal]) -> dict[str, float]:
    """1-Wasserstein distances of the density (g/cm^3) and of the number of distinct elements."""
    from scipy.stats import wasserstein_distance

    gen = [c for c in generated if c.volume > 0]
    return {
        "wdist_density": float(
            wasserstein_distance([_density(c) for c in gen], [_density(c) for c in reference])
        ),
        "wdist_num_elements": float(
            wasserstein_distance(
                [len(set(c.numbers.tolist())) for c in generated],
                [len(set(c.numbers.tolist())) for c in reference],
            )
        ),
    }


def uniqueness(crystals: Sequence[Crystal]) -> float:
    """The fraction of crystals that ``StructureMatcher()`` does not find equal to an earlier one."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if not crystals:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = StructureMatcher().group_structures([c.to_structure() for c in crystals])
    return len(groups) / len(crystals)


def novelty(crystals: Sequence[Crystal], training: Sequence[Crystal]) -> float:
    """The fraction of crystals that match no training crystal of the same composition (``StructureMatcher()``)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if not crystals:
        return math.nan
    matcher = StructureMatcher()
    by_formula: dict[str, list] = {}
    for c in training:
        by_formula.setdefault(c.formula, []).append(c)
    novel = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in crystals:
            s = c.to_structure()
            if not any(matcher.fit(s, t.to_structure()) for t in by_formula.get(c.formula, [])):
                novel += 1
    return novel / len(crystals)


def generation_metrics(
    generated: Sequence[Crystal],
    reference: Sequence[Crystal],
    training: Sequence[Crystal] = (),
    cov_cutoffs: tuple[float, float] = COV_CUTOFFS["perov_5"],
    fingerprints: bool = True,
    processes: int = 1,
) -> dict[str, float]:
    """Every generation metric of the module docstring; COV and the Wasserstein distances on the valid
    (structurally and compositionally) samples, as CDVAE computes them. ``fingerprints=False`` skips COV
    (CrystalNN is the slowest part)."""
    struct = [structure_valid(c) for c in generated]
    comp = [smact_valid(c) for c in generated]
    valid = [c for c, s, k in zip(generated, struct, comp) if s and k]
    out = {
        "structure_validity": float(np.mean(struct)),
        "composition_validity": float(np.mean(comp)),
        "validity": len(valid) / max(len(generated), 1),
        "num_generated": float(len(generated)),
    }
    if valid:
        out |= property_wasserstein(valid, reference)
        out["uniqueness"] = uniqueness(valid)
        if training:
            out["novelty"] = novelty(valid, training)
        if fingerprints:
            out |= coverage(valid, reference, *cov_cutoffs, processes=processes)
    return out
