"""Structure folder dataset: filters, hash-keyed npz cache, items; and the shared real structures."""

import math
from pathlib import Path

import biotite.structure as struc
import biotite.structure.io as strucio
import numpy as np
import pytest
import torch
from diff_protein import geometry as geo
from diff_protein import io
from diff_protein.data import structures as st

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "proteins"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/proteins")


def _chain(phi_deg: float, psi_deg: float, length: int) -> np.ndarray:
    phi = torch.full((length,), math.radians(phi_deg), dtype=torch.float64)
    psi = torch.full((length,), math.radians(psi_deg), dtype=torch.float64)
    return geo.backbone_from_dihedrals(phi, psi).numpy()


def _loop(length: int) -> np.ndarray:
    """A chain cycling through loop regions of the Ramachandran plot: all coil by P-SEA."""
    pattern = [(-90, 0), (60, 40), (-68, 145), (-90, 0), (-120, 150), (60, 40)]
    phi = torch.tensor([math.radians(pattern[i % 6][0]) for i in range(length)], dtype=torch.float64)
    psi = torch.tensor([math.radians(pattern[i % 6][1]) for i in range(length)], dtype=torch.float64)
    return geo.backbone_from_dihedrals(phi, psi).numpy()


def _hairpin(length: int) -> np.ndarray:
    from diff_protein.data.synthetic import generate_backbone

    return generate_backbone("helical_hairpin", length, torch.Generator().manual_seed(length)).atoms.numpy()


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "pdbs"
    io.write_backbone(root / "good.pdb", _hairpin(70), "A" * 70)
    io.write_backbone(root / "sub" / "good2.cif", _hairpin(80))
    io.write_backbone(root / "short.bcif", _hairpin(40))
    io.write_backbone(root / "loopy.pdb", _loop(70))
    # Two chains in one file.
    a = io.backbone_to_atom_array(_hairpin(64), chain_id="A")
    b = io.backbone_to_atom_array(_hairpin(64) + 30.0, chain_id="B")
    strucio.save_structure(str(root / "dimer.pdb"), struc.concatenate([a, b]))
    (root / "broken.pdb").write_text("this is not a PDB file\n")
    (root / "notes.txt").write_text("ignored")
    return root


def test_filters_and_items(folder, tmp_path):
    ds = st.StructureDataset(
        folder, st.StructureFilter(min_length=60, max_length=100, max_rg_ratio=2.0), cache_dir=tmp_path / "c"
    )
    assert sorted(p.name for p in ds.paths) == ["dimer.pdb", "good.pdb", "good2.cif"]
    reasons = {p.name: r for p, r in ds.skipped.items()}
    assert "length 40" in reasons["short.bcif"]
    assert "loop fraction" in reasons["loopy.pdb"]
    assert reasons["broken.pdb"].startswith("unreadable")
    item = ds[ds.paths.index(folder / "good.pdb")]
    assert item["atoms"].shape == (70, 4, 3) and item["rots"].shape == (70, 3, 3)
    torch.testing.assert_close(item["atoms"][:, 1].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    assert item["aatype"].tolist() == [0] * 70 and item["residue_index"].tolist() == list(range(1, 71))
    mono = st.StructureDataset(
        folder, st.StructureFilter(min_length=60, monomers_only=True, max_rg_ratio=2.0)
    )
    assert "dimer.pdb" not in [p.name for p in mono.paths]
    assert "2 protein chains" in mono.skipped[folder / "dimer.pdb"]


def test_rg_filter_rejects_extended_chains(tmp_path):
    io.write_backbone(tmp_path / "helix.pdb", _chain(-63, -42, 70))  # a 105 A rod: helix but not compact
    ds = st.StructureDataset(tmp_path, st.StructureFilter(min_length=60))
    assert len(ds) == 0 and "Rg ratio" in ds.skipped[tmp_path / "helix.pdb"]
    assert len(st.StructureDataset(tmp_path, st.StructureFilter(min_length=60, max_rg_ratio=None))) == 1


def test_cache_is_keyed_by_file_hash_and_reused(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = st.StructureDataset(folder, cache_dir=cache, filters=st.StructureFilter(min_length=30))
    hashes = {st.file_hash(p) for p in folder.rglob("*") if p.suffix in (".pdb", ".cif", ".bcif")}
    assert {p.stem for p in cache.glob("*.npz")} == hashes
    # Second pass must not parse any file.
    monkeypatch.setattr(
        st, "preprocess", lambda path: (_ for _ in ()).throw(AssertionError(f"parsed {path}"))
    )
    second = st.StructureDataset(folder, cache_dir=cache, filters=st.StructureFilter(min_length=30))
    assert second.paths == first.paths and second.skipped == first.skipped
    np.testing.assert_array_equal(second.records[0].coords, first.records[0].coords)


@pytest.mark.skipif(not (DATA / "1aki.bcif").is_file(), reason="shared real structures absent")
def test_real_folder(tmp_path):
    ds = st.StructureDataset(DATA, cache_dir=tmp_path)
    names = [p.stem for p in ds.paths]
    assert "1aki" in names
    reasons = {p.stem: r for p, r in ds.skipped.items()}
    assert "length 20" in reasons["1l2y"]  # Trp-cage, 20 residues
    assert "2d0f" in reasons and "no protein chain" in reasons["4gxy"]  # 637 residues; an RNA entry
    assert len(ds) == 9
    item = ds[names.index("1aki")]
    assert item["atoms"].shape[0] == len(item["aatype"]) > 100
