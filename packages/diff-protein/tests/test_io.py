"""PDB / mmCIF / BinaryCIF round trips through biotite, and reading the shared real structures."""

import math
from pathlib import Path

import biotite.structure.io as strucio
import numpy as np
import pytest
import torch
from diff_protein import geometry as geo
from diff_protein import io

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "proteins"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/proteins")


def _backbone(length: int = 12) -> np.ndarray:
    phi = torch.full((length,), math.radians(-60.0), dtype=torch.float64)
    psi = torch.full((length,), math.radians(-45.0), dtype=torch.float64)
    return geo.backbone_from_dihedrals(phi, psi).numpy().astype(np.float32) + 10.0


@pytest.mark.parametrize("suffix", [".pdb", ".cif", ".bcif"])
def test_write_then_read_back_equal(tmp_path, suffix):
    coords = _backbone()
    seq = "ACDEFGHIKLMW"
    path = io.write_backbone(tmp_path / f"bb{suffix}", coords, seq, chain_id="B")
    chain = io.read_backbone(path)
    assert chain.sequence == seq and chain.chain_id == "B"
    np.testing.assert_array_equal(chain.residue_ids, np.arange(1, 13))
    # PDB stores 3 decimals.
    np.testing.assert_allclose(chain.coords, coords, atol=1e-3 if suffix == ".pdb" else 1e-4)
    # The raw biotite array keeps atom names and elements a viewer needs.
    arr = strucio.load_structure(str(path))
    assert arr.atom_name[:4].tolist() == ["N", "CA", "C", "O"]
    assert arr.element[:4].tolist() == ["N", "C", "C", "O"]


def test_default_residue_name_is_glycine(tmp_path):
    path = io.write_backbone(tmp_path / "g.pdb", _backbone(5))
    assert io.read_backbone(path).sequence == "GGGGG"
    assert "GLY" in path.read_text()


def test_bad_inputs_name_parameter(tmp_path):
    with pytest.raises(ValueError, match="path"):
        io.write_backbone(tmp_path / "x.xyz", _backbone(3))
    with pytest.raises(ValueError, match="coords"):
        io.write_backbone(tmp_path / "x.pdb", np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="sequence"):
        io.write_backbone(tmp_path / "x.pdb", _backbone(3), "AA")


def test_three_to_one():
    assert io.three_to_one("ALA") == "A" and io.three_to_one("mse") == "M" and io.three_to_one("HOH") == "X"


@pytest.mark.skipif(not (DATA / "1aki.bcif").is_file(), reason="shared real structures absent")
def test_read_real_structure():
    chain = io.read_backbone(DATA / "1aki.bcif")
    assert len(chain) > 100 and set(chain.sequence) <= set("ACDEFGHIKLMNPQRSTVWYX")
    ca = chain.coords[:, 1]
    d = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)
    assert np.median(d) == pytest.approx(3.80, abs=0.02)
    with pytest.raises(ValueError, match="chain"):
        io.read_backbone(DATA / "1aki.bcif", chain="Z")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("text.pdb", b"this is not a PDB file\n"),
        ("garbage.pdb", b"ATOM  garbage\n"),
        ("noise.bcif", bytes(range(256)) * 2),
        ("empty.cif", b"data_x\n_atom_site.foo 1\n"),
    ],
)
def test_a_corrupt_structure_file_is_named_in_the_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"path: cannot read .*{name}"):
        io.read_backbone(path)


def test_fasta_written_and_read_back(tmp_path):
    from diff_protein.data.sequences import read_fasta

    records = [("sample_0 Tax=Homo sapiens", "ACDEFGHIKLMNPQRSTVWY"), ("sample_1", "MKV")]
    path = io.write_fasta(tmp_path / "out" / "s.fasta", records, width=8)
    assert path.read_text().splitlines()[:4] == [">sample_0 Tax=Homo sapiens", "ACDEFGHI", "KLMNPQRS", "TVWY"]
    assert [(r.header, r.sequence) for r in read_fasta(path)] == records
    assert [p.name for p in path.parent.iterdir()] == ["s.fasta"]  # no temporary file left behind
    with pytest.raises(ValueError, match="records"):
        io.write_fasta(tmp_path / "bad.fasta", [("a\nb", "MK")])


def test_a_bad_fasta_file_is_named_with_its_line(tmp_path):
    from diff_protein.data.sequences import read_a3m, read_fasta

    path = tmp_path / "bad.fasta"
    path.write_text("; comment\nMKV\n>x\nMK\n")
    with pytest.raises(ValueError, match=r"bad\.fasta: line 2: sequence line before"):
        read_fasta(path)
    with pytest.raises(FileNotFoundError, match="path"):
        read_a3m(tmp_path / "none.a3m")
