"""Backbone and sequence metrics against hand-computed answers, scipy, and real structures."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diff_protein import geometry as geo
from diff_protein import io
from diff_protein import metrics as M
from scipy.spatial.transform import Rotation

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "proteins"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/proteins")


def _chain(phi_deg: float, psi_deg: float, length: int = 30) -> np.ndarray:
    phi = torch.full((length,), math.radians(phi_deg), dtype=torch.float64)
    psi = torch.full((length,), math.radians(psi_deg), dtype=torch.float64)
    return geo.backbone_from_dihedrals(phi, psi).numpy()


def test_ca_ca_and_angle_on_ideal_and_perturbed_chains():
    atoms = _chain(-63, -42)
    assert M.ca_ca_valid_fraction(atoms) == 1.0
    assert M.n_ca_c_angle_deviation(atoms) == pytest.approx(0.0, abs=1e-9)
    bad = atoms.copy()
    bad[10:, :, :] += np.array(
        [0.5, 0.0, 0.0]
    )  # one stretched CA-CA link (rigid shift of the C-terminal part)
    d = np.linalg.norm(bad[10, 1] - bad[9, 1])
    expected = (29 - int(abs(d - 3.80) >= 0.1)) / 29
    assert M.ca_ca_valid_fraction(bad) == pytest.approx(expected)
    assert M.ca_ca_valid_fraction(torch.from_numpy(atoms[:, 1])) == 1.0


def test_clash_count_and_radius_of_gyration():
    ca = np.array([[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [2.0, 0.5, 0]])
    # Pairs with |i-j| >= 3: (0, 3) only, distance ~2.06 < 3.
    assert M.clash_count(ca) == 1
    assert M.clash_count(ca, cutoff=2.0) == 0
    two = np.array([[0.0, 0, 0], [4.0, 0, 0]])
    assert M.radius_of_gyration(two) == pytest.approx(2.0)
    assert M.rg_ratio(two) == pytest.approx(2.0 / (2.2 * 2**0.38))


def test_rg_vs_reference_compares_with_the_reference_not_the_globule_law():
    # Issue #8: the benchmark's "rg_ratio 2.0" was Rg over the globule law 2.2 L^0.38, which elongated
    # training chains exceed themselves; the size relative to the training set must be measured apart.
    helix, strand = _chain(-63, -42, 40), _chain(-120, 130, 40)
    ref = [helix, strand]
    assert M.rg_ratio(strand) > 2.0  # an extended chain is far from the globule law...
    assert M.rg_vs_reference(ref, ref) == pytest.approx(1.0)  # ...but a set against itself gives 1
    assert M.rg_vs_reference([a * 2.0 for a in ref], ref) == pytest.approx(2.0)
    # lengths are put on the law's scale: a rigid-body move or rotation changes nothing
    rot = Rotation.random(random_state=0).as_matrix()
    assert M.rg_vs_reference([helix @ rot.T + 5.0], [helix]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference"):
        M.rg_vs_reference([helix], [])


def test_length_matched_weights_give_the_reference_the_samples_lengths():
    w = M.length_matched_weights([40, 40, 60], [40, 40, 50, 60, 90])
    assert w == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3, 0.0])  # two samples at 40 share its two chains
    assert M.length_matched_weights([52], [40, 50, 54, 60]) == pytest.approx(
        [0, 0.5, 0.5, 0]
    )  # nearest: ties
    lengths = [40, 40, 55, 70]
    assert M.length_matched_weights(lengths, lengths) == pytest.approx(
        np.full(4, 0.25)
    )  # a set against itself
    with pytest.raises(ValueError, match="reference_lengths"):
        M.length_matched_weights([40], [])


def test_rg_vs_reference_matches_lengths():
    # A short extended chain against a reference of short extended and long compact chains: only the short
    # ones are its peers, so it is exactly as spread out as the reference; a plain mean says otherwise.
    short, long = _chain(-120, 130, 30), _chain(-63, -42, 80)
    assert M.rg_vs_reference([short], [short, long]) == pytest.approx(1.0)
    assert M.rg_vs_reference([short], [short, long], match_lengths=False) > 1.05


def test_kabsch_rmsd_matches_scipy_and_is_invariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 3)) * 5
    rot = Rotation.random(random_state=1)
    y = rot.apply(x) + np.array([3.0, -2.0, 1.0]) + rng.normal(size=(25, 3)) * 0.3
    _, rssd = Rotation.align_vectors(y - y.mean(0), x - x.mean(0))
    assert M.kabsch_rmsd(x, y) == pytest.approx(rssd / math.sqrt(25), rel=1e-9)
    assert M.kabsch_rmsd(x, rot.apply(x) + 7.0) == pytest.approx(0.0, abs=1e-9)
    # A reflection is not a rotation: the mirror image of a chiral set does not superpose.
    assert M.kabsch_rmsd(x, x * np.array([1, 1, -1])) > 0.5
    with pytest.raises(ValueError, match="equal lengths"):
        M.kabsch_rmsd(x, y[:-1])


def test_sse_composition_of_ideal_helix_and_strand():
    helix = M.sse_composition(_chain(-63, -42))
    assert helix["a"] > 0.8 and sum(helix.values()) == pytest.approx(1.0)
    strand = M.sse_composition(_chain(-120, 130))
    assert strand["a"] == 0.0


def test_structure_diversity_and_novelty_by_rmsd():
    a, b = _chain(-63, -42, 20), _chain(-120, 130, 20)
    res = M.pairwise_structure_similarity([a, b, a], metric="rmsd")
    expected = (M.kabsch_rmsd(a, b) * 2 + 0.0) / 3
    assert res["metric"] == "rmsd" and res["pairs"] == 3 and res["mean"] == pytest.approx(expected)
    nov = M.novelty([a, _chain(-63, -42, 25)], [b, a], metric="rmsd")
    assert nov[0] == pytest.approx(0.0, abs=1e-6) and math.isnan(nov[1])
    with pytest.raises(ValueError, match="metric"):
        M.novelty([a], [b], metric="gdt")


@pytest.mark.skipif(not M.tmtools_available(), reason="tmtools (diff-protein[tm]) not installed")
def test_tm_score_identity_and_diversity():
    a, b = _chain(-63, -42, 40), _chain(-120, 130, 40)
    assert M.tm_score(a, a) == pytest.approx(1.0, abs=1e-6)
    assert M.tm_score(a, b) < 0.5
    assert M.pairwise_structure_similarity([a, b], metric="tm")["mean"] < 0.5


def test_sequence_composition_and_identity():
    comp = M.aa_composition(["AAC", "CX"])
    assert (
        comp[0] == pytest.approx(0.5) and comp[1] == pytest.approx(0.5) and comp.sum() == pytest.approx(1.0)
    )
    assert M.composition_divergence(["ACDE"], ["EDCA"]) == pytest.approx(0.0, abs=1e-12)
    assert M.composition_divergence(["AAAA"], ["CCCC"]) == pytest.approx(1.0)
    assert M.sequence_identity("MKVL", "MKAL") == 0.75
    assert M.sequence_identity("MKVLAGHH", "MKVAGHH") == pytest.approx(1.0)  # one deletion
    assert M.pairwise_identity(["AAAA", "AAAC", "CCCC"]) == pytest.approx((0.75 + 0.0 + 0.25) / 3)
    with pytest.raises(ValueError, match="sequences"):
        M.pairwise_identity(["A"])


@pytest.mark.skipif(not (DATA / "1aki.bcif").is_file(), reason="shared real structures absent")
@pytest.mark.parametrize("name", ["1aki", "3o5r", "1o1z"])
def test_real_structures_pass_backbone_checks(name):
    chain = io.read_backbone(DATA / f"{name}.bcif")
    report = M.backbone_report(chain.coords)
    assert report["ca_ca_valid"] >= 0.98
    assert report["clashes"] == 0
    assert 0.8 < report["rg_ratio"] < 1.2  # compact globular proteins
    assert report["n_ca_c_dev_deg"] < 4.0  # crystal structures scatter ~2-3 deg around ideal
    assert report["helix"] + report["strand"] > 0.25
