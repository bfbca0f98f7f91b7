"""The data room: generated prototypes, file readers that report what they skip, and leak-free splits."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from diff_materials.data import (
    Crystal,
    CrystalDataset,
    GeneratedConfig,
    collate_crystals,
    deduplicate,
    generate_crystals,
    polymorph_grouped_split,
    prototype,
    random_split,
    read_cdvae_csv,
    read_cif_folder,
)
from diff_materials.io import cif_text
from diff_materials.metrics import smact_valid

DISORDERED_CIF = """data_x
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Fe Fe1 0 0 0 0.5
Ni Ni1 0 0 0 0.5
"""


def test_srtio3_lattice_is_twice_the_ti_o_distance_of_shannon_radii():
    c = prototype("perovskite", "Sr", "O", "Ti", (2, 4, -2))
    assert c.formula == "SrTiO3"
    assert np.allclose(c.lattice, 2 * (0.745 + 1.26) * np.eye(3))  # Ti4+ and O2- radii of pymatgen
    ti, o = c.frac[1] @ c.lattice, c.frac[2] @ c.lattice
    assert np.linalg.norm(ti - o) == pytest.approx(0.745 + 1.26)
    assert c.properties["volume_per_atom"] == pytest.approx(c.volume / 5)


def test_generated_set_is_deterministic_charge_balanced_and_within_the_tolerance_factor(perovskites):
    again = generate_crystals(GeneratedConfig(seed=0))
    other = generate_crystals(GeneratedConfig(seed=1))
    assert [c.material_id for c in again] == [c.material_id for c in perovskites]
    assert [c.material_id for c in other] != [c.material_id for c in perovskites]
    assert sorted(c.material_id for c in other) == sorted(c.material_id for c in perovskites)
    assert len({c.formula for c in perovskites}) == len(perovskites) > 100
    assert all(0.8 <= c.properties["tolerance_factor"] <= 1.1 for c in perovskites)
    assert all(smact_valid(c) for c in perovskites[:40])


@pytest.mark.parametrize(
    "kind, cation, anion, charges",
    [("rocksalt", "Na", "Cl", (1, -1)), ("cscl", "Cs", "Cl", (1, -1)), ("zincblende", "Zn", "S", (2, -2)),
     ("fluorite", "Ca", "F", (2, -1))],
)  # fmt: skip
def test_other_prototypes_put_cation_and_anion_at_the_sum_of_their_radii(kind, cation, anion, charges):
    from pymatgen.core import Species

    c = prototype(kind, cation, anion, None, charges)
    s = c.to_structure()
    expected = Species(cation, charges[0]).ionic_radius + Species(anion, charges[1]).ionic_radius
    nearest = min(s.get_distance(0, j, jimage=None) for j in range(1, len(s)))
    assert nearest == pytest.approx(expected, rel=1e-6)
    assert smact_valid(c)
    if kind == "rocksalt":  # NaCl: a = 2 (r_Na + r_Cl) = 5.66 A, measured 5.64 A
        assert s.lattice.volume * 4 == pytest.approx(5.66**3, rel=1e-3)


def test_jitter_moves_atoms_reproducibly():
    a = generate_crystals(GeneratedConfig(num_crystals=3, jitter=0.05, seed=3))
    b = generate_crystals(GeneratedConfig(num_crystals=3, jitter=0.05, seed=3))
    ideal = generate_crystals(GeneratedConfig(num_crystals=3, seed=3))
    assert all(np.array_equal(x.frac, y.frac) for x, y in zip(a, b))
    assert not np.allclose(a[0].frac, ideal[0].frac)


def test_bad_generated_settings_name_the_parameter():
    with pytest.raises(ValueError, match="kinds"):
        GeneratedConfig(kinds=("spinel",))
    with pytest.raises(ValueError, match="num_crystals"):
        generate_crystals(GeneratedConfig(num_crystals=100000))


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "material_id", "cif", "formula", "heat_ref"])
        for r in rows:
            w.writerow(r)


def test_cdvae_csv_reader_keeps_properties_and_reports_bad_rows_with_their_line(tmp_path, perovskites):
    a, b = perovskites[:2]
    path = tmp_path / "x.csv"
    _write_csv(path, [[0, "m1", cif_text(a), a.formula, "-1.5"], [1, "bad", "not a cif", "X", "0"],
                      [2, "dis", DISORDERED_CIF, "FeNi", "0"], [3, "m2", cif_text(b), b.formula, ""]])  # fmt: skip
    result = read_cdvae_csv(path)
    assert [c.material_id for c in result.crystals] == ["m1", "m2"]
    assert result.crystals[0].properties == {"heat_ref": -1.5}
    assert result.crystals[1].properties == {}
    assert np.allclose(result.crystals[0].lattice, a.lattice, atol=1e-6)
    assert len(result.skipped) == 2
    # the bad row starts after the header and the multi-line CIF of row one
    first_cif_lines = cif_text(a).count("\n") + 1
    assert result.skipped[0].startswith(f"{path}:{2 + first_cif_lines} (bad): unreadable CIF")
    assert "disordered" in result.skipped[1]


def test_cif_folder_reader_skips_and_reports_unreadable_files(tmp_path, perovskites):
    (tmp_path / "a.cif").write_text(cif_text(perovskites[0]))
    (tmp_path / "b.cif").write_text("garbage")
    (tmp_path / "notes.txt").write_text("ignored")
    result = read_cif_folder(tmp_path)
    assert [c.material_id for c in result.crystals] == ["a"]
    assert len(result.skipped) == 1 and "b.cif" in result.skipped[0]


def test_readers_name_a_missing_file_or_a_wrong_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path: .*nope.csv"):
        read_cdvae_csv(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"x.csv:1 .*'cif' column"):
        read_cdvae_csv(tmp_path / "x.csv")


def test_polymorph_split_keeps_every_formula_on_one_side(perovskites):
    polymorphs = [Crystal(c.lattice * 1.1, c.frac, c.numbers, c.material_id + "-b") for c in perovskites[:30]]
    crystals = perovskites[:60] + polymorphs
    train, held = polymorph_grouped_split(crystals, 0.25, seed=0)
    assert {c.formula for c in train}.isdisjoint({c.formula for c in held})
    assert len(train) + len(held) == len(crystals) and len(held) >= 0.25 * len(crystals)
    _, held_r = random_split(crystals, 0.25, seed=0)
    assert len(held_r) == round(0.25 * len(crystals))


def test_deduplicate_removes_a_rotated_translated_copy_but_keeps_a_polymorph(perovskites):
    c = perovskites[0]
    rot = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]])
    copy = Crystal(c.lattice @ rot.T, c.frac + 0.3, c.numbers, "copy")
    moved = c.frac.copy()
    moved[1] = [0.25, 0.25, 0.25]  # the B site off the body centre: another structure of the same formula
    polymorph = Crystal(c.lattice, moved, c.numbers, "big")
    kept = deduplicate([c, copy, polymorph])
    assert [k.material_id for k in kept] == [c.material_id, "big"]


def test_collate_concatenates_atoms_and_masks_unknown_properties(perovskites):
    ds = CrystalDataset(perovskites[:3], properties=("volume_per_atom", "band_gap"))
    b = collate_crystals([ds[i] for i in range(3)])
    assert b["frac"].shape == (15, 3) and b["num_atoms"].tolist() == [5, 5, 5]
    assert b["batch"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(b["types"][:5] + 1, torch.as_tensor(perovskites[0].numbers))
    assert b["property_mask"][:, 0].all() and not b["property_mask"][:, 1].any()
    assert not torch.isnan(b["properties"]).any()
    assert math.isclose(
        float(b["properties"][0, 0]), perovskites[0].properties["volume_per_atom"], rel_tol=1e-6
    )


def test_crystal_refuses_unknown_elements_and_mismatched_atoms():
    with pytest.raises(ValueError, match="numbers"):
        Crystal(np.eye(3), [[0, 0, 0]], [0])
    with pytest.raises(ValueError, match="numbers, frac"):
        Crystal(np.eye(3), [[0, 0, 0]], [1, 1])
