"""Metrics against known answers: validity rules, SMACT, StructureMatcher match rate / RMSE, coverage,
Wasserstein distances, uniqueness and novelty."""

from __future__ import annotations

import math

import numpy as np
import pytest
from diff_materials.data import Crystal, prototype
from diff_materials.metrics import (
    coverage,
    csp_metrics,
    novelty,
    property_wasserstein,
    smact_valid,
    structure_valid,
    uniqueness,
)


def _nacl(a: float = 5.64) -> Crystal:
    fcc = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    return Crystal(fcc, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17], "NaCl")


def test_structural_validity_needs_half_an_angstrom_between_atoms_and_a_real_volume():
    assert structure_valid(_nacl())
    close = Crystal(4 * np.eye(3), [[0, 0, 0], [0.1, 0, 0]], [11, 17])  # 0.4 A apart
    assert not structure_valid(close)
    across = Crystal(
        4 * np.eye(3), [[0.01, 0, 0], [0.95, 0, 0]], [11, 17]
    )  # 0.24 A apart through the boundary
    assert not structure_valid(across)
    assert structure_valid(Crystal(4 * np.eye(3), [[0, 0, 0], [0.125, 0, 0]], [11, 17]))  # 0.5 A: allowed
    flat = Crystal(np.diag([4.0, 4.0, 1e-3]), [[0, 0, 0]], [11])
    assert not structure_valid(flat)
    short_cell = Crystal(np.diag([0.3, 4.0, 4.0]), [[0, 0, 0]], [6])  # an atom 0.3 A from its own image
    assert not structure_valid(short_cell)


@pytest.mark.parametrize(
    "numbers, counts, valid",
    [([11, 17], [1, 1], True), ([11, 17], [1, 2], False), ([38, 22, 8], [1, 1, 3], True),
     ([26, 28], [1, 3], True), ([6], [24], True), ([8, 9], [1, 1], False)],
)  # fmt: skip
def test_smact_validity_of_known_compositions(numbers, counts, valid):
    assert smact_valid(numbers, counts) is valid


def test_match_rate_and_rmse_of_exact_moved_perturbed_and_wrong_predictions():
    ref = prototype("perovskite", "Sr", "O", "Ti", (2, 4, -2))
    rot = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])
    moved = Crystal(ref.lattice @ rot, ref.frac + 0.25, ref.numbers)  # relabelled axes, translated
    jiggle = ref.frac.copy()
    jiggle[1] += [0.02, 0.0, 0.0]
    perturbed = Crystal(ref.lattice, jiggle, ref.numbers)
    wrong = Crystal(ref.lattice, np.random.default_rng(0).random((5, 3)), ref.numbers)
    m = csp_metrics([[ref], [moved], [perturbed], [wrong]], [ref] * 4)
    assert m["match_rate@1"] == 0.75
    # RMS of the perturbed one: one atom off by 0.02 a, normalised by (V/N)^(1/3), over 5 atoms, centred
    a = ref.lattice[0, 0]
    shift = np.zeros((5, 3))
    shift[1, 0] = 0.02 * a
    shift -= shift.mean(0)
    expected = np.sqrt((shift**2).sum(1).mean()) / (a**3 / 5) ** (1 / 3)
    assert m["rmse@1"] == pytest.approx(
        expected / 3, rel=1e-3
    )  # mean over the three matches (0, 0, expected)
    best = csp_metrics([[wrong, perturbed, ref]], [ref])
    assert (
        best["match_rate@1"] == 0.0
        and best["match_rate@3"] == 1.0
        and best["rmse@3"] == pytest.approx(0, abs=1e-6)
    )


def test_uniqueness_and_novelty_count_structure_matcher_groups():
    a = _nacl()
    translated = Crystal(a.lattice, a.frac + 0.3, a.numbers)
    cscl = Crystal(3.3 * np.eye(3), [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17])
    assert uniqueness([a, translated, cscl]) == pytest.approx(2 / 3)
    assert novelty([a, cscl], training=[translated]) == 0.5


def test_density_wasserstein_is_zero_for_equal_sets_and_the_density_difference_otherwise():
    a = _nacl()
    assert property_wasserstein([a], [a]) == {"wdist_density": 0.0, "wdist_num_elements": 0.0}
    big = _nacl(5.64 * 2 ** (1 / 3))  # twice the volume: half the density
    rho = 58.44 * 1.66053906660 / (5.64**3 / 4)  # NaCl: 2.17 g/cm^3
    assert rho == pytest.approx(2.17, abs=0.01)
    assert property_wasserstein([big], [a])["wdist_density"] == pytest.approx(rho / 2, rel=1e-3)


def test_coverage_is_full_for_the_reference_itself_and_drops_for_other_structures(perovskites):
    ref = perovskites[:6]
    full = coverage(ref, ref)
    assert full == {"cov_recall": 1.0, "cov_precision": 1.0}
    chains = [Crystal(np.diag([1.5, 10, 10]), [[0, 0, 0]], [6]) for _ in range(3)]  # carbon chains
    half = coverage(ref[:3] + chains, ref)
    # every cubic perovskite has the same CrystalNN fingerprint, so the three kept ones may cover the others
    assert half["cov_precision"] == 0.5 and half["cov_recall"] >= 0.5
    assert math.isclose(coverage(chains, ref)["cov_recall"], 0.0)
