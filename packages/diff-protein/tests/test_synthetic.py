"""The generated backbone set: ideal geometry, no clashes, intended secondary structure, determinism."""

import biotite.structure as struc
import pytest
import torch
from diff_protein import geometry as geo
from diff_protein.data import synthetic as syn
from diff_protein.io import backbone_to_atom_array


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset():
    return syn.SyntheticBackbones(
        syn.SyntheticBackboneConfig(num_samples=9, min_length=40, max_length=64, seed=3)
    )


def _annotate(atoms: torch.Tensor) -> str:
    """biotite's P-SEA on the full backbone (any biotite version: 1.x symbols, 2.x PSeaElement codes)."""
    sse = struc.annotate_sse(backbone_to_atom_array(atoms.numpy()))
    if sse.dtype.kind in "iu":
        sse = struc.PSeaElement.to_symbols(sse)
    return "".join(str(code) for code in sse)


def test_ideal_geometry_and_no_clashes(dataset):
    for i in range(len(dataset)):
        item = dataset[i]
        atoms = item["atoms"].double()
        ca = atoms[:, 1]
        d = (ca[1:] - ca[:-1]).norm(dim=-1)
        assert ((d - geo.CA_CA_DISTANCE).abs() < 0.1).float().mean() >= 0.99
        torch.testing.assert_close(
            geo.bond_angle(atoms[:, 0], atoms[:, 1], atoms[:, 2]),
            torch.full((len(ca),), geo.ANGLE_N_CA_C, dtype=torch.float64),
            atol=1e-4,
            rtol=0,
        )
        assert not syn.has_clash(ca, 3.0)
        assert 40 <= len(ca) <= 64
        torch.testing.assert_close(ca.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
        # Frames carried by the item reproduce the atoms' CA and are rotations.
        torch.testing.assert_close(item["trans"], item["atoms"][:, 1])
        torch.testing.assert_close(torch.det(item["rots"]), torch.ones(len(ca)), atol=1e-5, rtol=0)


def test_helical_hairpin_is_mostly_helix_by_annotate_sse():
    g = torch.Generator().manual_seed(0)
    for length in (40, 64):
        bb = syn.generate_backbone("helical_hairpin", length, g)
        sse = _annotate(bb.atoms)
        assert sse.count("a") / length > 0.7
        # Labels from construction agree with biotite's P-SEA on most residues.
        assert sum(a == b for a, b in zip(sse, bb.ss)) / length > 0.85
        # Two helices packed side by side: the chain folds back, so it is far shorter than a single helix.
        ca = bb.atoms[:, 1]
        assert (ca[0] - ca[-1]).norm() < 20.0


def test_beta_hairpin_has_paired_strands():
    bb = syn.generate_backbone("beta_hairpin", 30, torch.Generator().manual_seed(1))
    sse = _annotate(bb.atoms)
    assert sse.count("b") / 30 > 0.5
    ca = bb.atoms[:, 1].double()
    b = [i for i, s in enumerate(bb.ss) if s == "b"]
    first, second = b[: len(b) // 2], b[len(b) // 2 :]
    # Antiparallel pairing: residue k of strand 1 faces residue -k of strand 2 at ~4.4-5.5 A.
    pair = (ca[first[-3]] - ca[second[2]]).norm()
    assert 3.8 < float(pair) < 6.5


def test_bundle_is_compact():
    bb = syn.generate_backbone("helix_bundle", 70, torch.Generator().manual_seed(2))
    ca = bb.atoms[:, 1].double()
    rg = ca.pow(2).sum(-1).mean().sqrt()
    single_helix_rg = 1.5 * 70 / (12**0.5)  # a rod of 1.5 A rise per residue
    assert rg < 0.6 * single_helix_rg


def test_deterministic_from_seed():
    cfg = syn.SyntheticBackboneConfig(num_samples=3, min_length=40, max_length=50, seed=7)
    a, b = syn.SyntheticBackbones(cfg), syn.SyntheticBackbones(cfg)
    torch.testing.assert_close(a[2]["atoms"], b[2]["atoms"], atol=0, rtol=0)
    c = syn.SyntheticBackbones(
        syn.SyntheticBackboneConfig(num_samples=3, min_length=40, max_length=50, seed=8)
    )
    assert a[2]["atoms"].shape != c[2]["atoms"].shape or not torch.equal(a[2]["atoms"], c[2]["atoms"])


def test_bad_config_names_parameter():
    with pytest.raises(ValueError, match="topologies"):
        syn.SyntheticBackboneConfig(topologies=("sheet",))
    with pytest.raises(ValueError, match="min_length"):
        syn.SyntheticBackboneConfig(min_length=10)
    with pytest.raises(IndexError, match="index"):
        syn.SyntheticBackbones(syn.SyntheticBackboneConfig(num_samples=2))[5]


def test_disk_cache_round_trip(tmp_path):
    cfg = syn.SyntheticBackboneConfig(num_samples=2, min_length=40, max_length=44, seed=9)
    first = syn.SyntheticBackbones(cfg, cache_dir=tmp_path)
    first.materialize()
    assert first.cache_path is not None and first.cache_path.is_file()
    second = syn.SyntheticBackbones(cfg, cache_dir=tmp_path)
    assert len(second._cache) == 2  # loaded, not generated
    for i in range(2):
        torch.testing.assert_close(second[i]["atoms"], first[i]["atoms"], atol=0, rtol=0)
        assert second.backbone(i).ss == first.backbone(i).ss
    other = syn.SyntheticBackbones(syn.SyntheticBackboneConfig(num_samples=2, seed=10), cache_dir=tmp_path)
    assert other.cache_path != first.cache_path and not other._cache
