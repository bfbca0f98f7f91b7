"""A new user's first hour with diff-materials (issue #23): their own folder of CIF files, trained and sampled
from the command line on the defaults (crystal structure prediction; only the network and the number of steps
made tiny, with a learning rate to match), at tiny size on the CPU.

The folder holds twelve cubic ABO3 perovskites written by pymatgen, as a user would export them. The samples
(the training compositions, as ``sample`` takes them by default) are read back with pymatgen and must be
crystals of the data's kind, not noise: their cells the data's size (volume per atom), and their atoms at
bonding distances: the share of atoms whose nearest neighbour lies in the data's bond band (1.6-2.4 A: every
B-O bond of a perovskite is a/2, about 2 A) must be well above that of atoms placed uniformly at random in the
data's own cells, most of the way to the data's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from diffcore.cli import build_app
from typer.testing import CliRunner

pytest.importorskip("diff_materials")
pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure

runner = CliRunner()
SEED = os.environ.get("FIRST_HOUR_SEED", "0")  # to check the margins over seeds by hand
TINY = ["--width", "32", "--depth", "2", "--steps", "1500", "--lr", "1e-3"]
PEROVSKITES = [("Sr", "Ti", 3.905), ("Ba", "Ti", 4.01), ("Ca", "Ti", 3.84), ("Sr", "Zr", 4.10), ("Ba", "Zr", 4.19),
               ("K", "Nb", 4.00), ("Na", "Nb", 3.95), ("La", "Al", 3.79), ("Sr", "Sn", 4.03), ("Ba", "Sn", 4.12),
               ("Ca", "Zr", 4.02), ("K", "Ta", 3.99)]  # fmt: skip
BAND = (1.6, 2.4)


def _perovskite(a_site: str, b_site: str, a: float) -> Structure:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]]
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), [a_site, b_site, "O"], coords)


def _stats(structures: list[Structure]) -> tuple[float, float]:
    """Share of atoms whose nearest neighbour is within ``BAND`` and mean volume per atom (A^3)."""
    nearest = np.concatenate([(s.distance_matrix + 1e9 * np.eye(len(s))).min(1) for s in structures])
    in_band = float(np.mean((nearest > BAND[0]) & (nearest < BAND[1])))
    return in_band, float(np.mean([s.volume / len(s) for s in structures]))


def _uniform(structures: list[Structure], rng: np.random.Generator) -> list[Structure]:
    """The same cells and atoms, placed uniformly at random: what a model that learned nothing of the positions
    would give."""
    return [Structure(s.lattice, s.species, rng.random((len(s), 3))) for s in structures for _ in range(8)]


def test_the_bond_band_tells_crystals_from_random_positions():
    data = [_perovskite(*p) for p in PEROVSKITES]
    in_band, _ = _stats(data)
    noise, _ = _stats(_uniform(data, np.random.default_rng(0)))
    assert in_band > 0.75 and noise < 0.35, (in_band, noise)


@pytest.mark.slow
def test_a_folder_of_my_own_cif_files_trains_and_samples_are_crystals(tmp_path):
    data = tmp_path / "my_cifs"
    data.mkdir()
    for a_site, b_site, a in PEROVSKITES:
        _perovskite(a_site, b_site, a).to(filename=str(data / f"{a_site}{b_site}O3.cif"))
    structures = [Structure.from_file(p) for p in sorted(data.glob("*.cif"))]

    run = tmp_path / "run"
    result = runner.invoke(
        build_app(),
        [
            "materials",
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--device",
            "cpu",
            "--seed",
            SEED,
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "samples"
    result = runner.invoke(
        build_app(),
        ["materials", "sample", "--pipeline", str(run), "--out", str(out), "-n", "16", "--device", "cpu",
         "--seed", SEED],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.cif"))
    assert len(files) == 16 and (out / "samples.png").is_file()
    samples = [Structure.from_file(p) for p in files]
    formulas = {s.composition.reduced_formula for s in structures}
    assert {s.composition.reduced_formula for s in samples} <= formulas  # the training compositions

    want, want_volume = _stats(structures)
    noise, _ = _stats(_uniform(structures, np.random.default_rng(1)))
    got, volume = _stats(samples)
    print(f"bond band share: samples {got:.3f}, data {want:.3f}, uniform {noise:.3f}; "
          f"volume per atom: samples {volume:.2f}, data {want_volume:.2f}")  # fmt: skip
    assert abs(volume - want_volume) < 0.15 * want_volume, (volume, want_volume)
    assert got - noise > 0.5 * (want - noise), (got, want, noise)
