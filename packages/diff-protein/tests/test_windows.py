"""Real-chain training windows: segmentation at breaks and non-standard residues, cropping, resolution filter,
and the data checks behind the real-data fix (units, centring, frames, spread) on a real chain.

``data/1aki_backbone.pdb``: the backbone (N, CA, C, O) of hen lysozyme, PDB 1AKI chain A (X-ray, 1.5 A;
PDB entries are public domain, CC0), written by ``diff_protein.io.write_backbone``.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diff_protein import geometry as geo
from diff_protein import io
from diff_protein.data.windows import ChainWindows, WindowConfig, chain_segments, window_starts
from diff_protein.diffusion.frame_flow import FrameFlowConfig
from diff_protein.frames import Rigid, backbone_from_frames

FIXTURE = Path(__file__).parent / "data" / "1aki_backbone.pdb"
SHARED = Path("/work/shared/data/proteins")


def _helix(length: int) -> np.ndarray:
    phi = torch.full((length,), math.radians(-63.0), dtype=torch.float64)
    psi = torch.full((length,), math.radians(-42.0), dtype=torch.float64)
    return geo.backbone_from_dihedrals(phi, psi).numpy().astype(np.float32)


def test_segments_split_at_breaks_and_nonstandard_residues():
    coords = _helix(30)
    coords[20:] += np.array([8.0, 0.0, 0.0], dtype=np.float32)  # a break between residues 19 and 20
    seq = "A" * 10 + "X" + "A" * 19
    assert chain_segments(coords, seq) == [(0, 10), (11, 20), (20, 30)]
    assert chain_segments(_helix(12), "A" * 12) == [(0, 12)]
    with pytest.raises(ValueError, match="sequence"):
        chain_segments(coords, "AAA")


def test_window_starts_cover_the_segment():
    assert window_starts(40, 48, 64, 16) == []
    assert window_starts(60, 48, 64, 16) == [(0, 60)]
    wins = window_starts(100, 48, 64, 16)
    assert wins == [(0, 64), (16, 64), (32, 64), (36, 64)]  # the last one ends at the segment's end
    covered = np.zeros(100, bool)
    for s, n in wins:
        covered[s : s + n] = True
    assert covered.all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="min_length"):
        WindowConfig(min_length=100, max_length=64)
    with pytest.raises(ValueError, match="stride"):
        WindowConfig(stride=0)
    with pytest.raises(ValueError, match="max_ca_ca"):
        WindowConfig(max_ca_ca=3.0)


def test_resolution_from_pdb_and_cif(tmp_path):
    assert io.read_resolution(FIXTURE) == pytest.approx(1.5)
    plain = io.write_backbone(tmp_path / "plain.pdb", _helix(10))
    assert io.read_resolution(plain) is None
    import biotite.structure.io.pdbx as pdbx

    cif = io.write_backbone(tmp_path / "x.cif", _helix(10))
    f = pdbx.CIFFile.read(str(cif))
    f.block["refine"] = pdbx.CIFCategory({"ls_d_res_high": "2.80"})
    f.write(str(cif))
    assert io.read_resolution(cif) == pytest.approx(2.8)


def test_dataset_windows_breaks_duplicates_and_resolution(tmp_path):
    root = tmp_path / "pdbs"
    broken = _helix(90)
    broken[50:] += np.array([0.0, 9.0, 0.0], dtype=np.float32)  # segments of 50 and 40
    io.write_backbone(root / "broken.pdb", broken)
    io.write_backbone(root / "long.cif", _helix(100))
    low = io.write_backbone(tmp_path / "low.pdb", _helix(80))
    text = low.read_text()
    (root / "lowres.pdb").write_text("REMARK   2 RESOLUTION.    4.20 ANGSTROMS.\n" + text)
    import biotite.structure as struc
    import biotite.structure.io as strucio

    a = io.backbone_to_atom_array(_helix(70), "A" * 70, chain_id="A")
    b = io.backbone_to_atom_array(_helix(70) + 40.0, "A" * 70, chain_id="B")  # same sequence: kept once
    strucio.save_structure(str(root / "dimer.pdb"), struc.concatenate([a, b]))

    data = ChainWindows(root, WindowConfig(min_length=40, max_length=64, stride=16, max_resolution=3.5))
    assert {p.name: r for p, r in data.skipped.items()} == {"lowres.pdb": "resolution 4.20 A > 3.5"}
    by_file: dict[str, list[int]] = {}
    for w in data.windows:
        by_file.setdefault(w.name, []).append(len(w.sequence))
    assert by_file == {"broken": [50, 40], "dimer": [64, 64], "long": [64, 64, 64, 64]}
    assert data.stats["duplicate_chains"] == 1 and data.stats["breaks"] == 1
    for i in range(len(data)):
        ca = data[i]["atoms"][:, 1]
        assert torch.linalg.vector_norm(ca[1:] - ca[:-1], dim=-1).max() < 4.2  # no window bridges a break
        assert torch.linalg.vector_norm(ca.mean(0)) < 1e-4


def _checks(data: ChainWindows) -> dict[str, float]:
    bonds, rebuild, trans = [], [], []
    for i in range(len(data)):
        item = data[i]
        atoms = item["atoms"].double()
        bonds.append(torch.linalg.vector_norm(atoms[1:, 1] - atoms[:-1, 1], dim=-1))
        rebuilt = backbone_from_frames(Rigid(item["rots"].double(), item["trans"].double()))[:, :3]
        rebuild.append(((rebuilt - atoms[:, :3]) ** 2).sum(-1).flatten())
        trans.append(item["trans"].double() * FrameFlowConfig().coordinate_scale)
    return {
        "ca_ca_mean": float(torch.cat(bonds).mean()),
        "rebuild_rmsd": float(torch.cat(rebuild).mean().sqrt()),
        "trans_std": float(torch.cat(trans).std()),
    }


def test_real_chain_units_frames_and_spread(tmp_path):
    """The checks of benchmarks/protein/protein_real_chains.py on a real chain: coordinates are angstrom
    (neighbouring CAs 3.80 A apart), frames from N, CA, C rebuild the real atoms to ideal-geometry accuracy,
    and the translations' spread in flow units matches the prior's N(0, 1) within a factor of 1.5."""
    root = tmp_path / "real"
    root.mkdir()
    (root / FIXTURE.name).write_bytes(FIXTURE.read_bytes())
    data = ChainWindows(root, WindowConfig(min_length=64, max_length=64, stride=32))
    assert [w.start for w in data.windows] == [0, 32, 64, 65]  # 129 residues, no break
    c = _checks(data)
    assert c["ca_ca_mean"] == pytest.approx(3.80, abs=0.02)
    assert c["rebuild_rmsd"] < 0.1
    assert 1 / 1.5 < c["trans_std"] < 1.5


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared real structures absent")
def test_shared_structures_give_windows_without_breaks():
    data = ChainWindows(SHARED, WindowConfig(min_length=64, max_length=128, stride=32))
    assert len(data) >= 20 and data.stats["breaks"] >= 1
    c = _checks(data)
    assert c["ca_ca_mean"] == pytest.approx(3.80, abs=0.02) and c["rebuild_rmsd"] < 0.1
    assert 1 / 1.5 < c["trans_std"] < 1.5
