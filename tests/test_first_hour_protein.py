"""A new user's first hour with diff-protein (issue #23): their own folder of structure files, trained and
sampled from the command line on the defaults (only the network and the number of steps made tiny), at tiny
size on the CPU.

The folder holds PDB files written from the generated helical hairpins (any folder of PDB / mmCIF / BinaryCIF
files reads the same way). The samples must be chains, not noise: consecutive CA atoms about 3.8 A apart and a
radius of gyration near the data's, where CA positions drawn from the prior are ~25 A apart and spread far
wider.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffcore.cli import build_app
from typer.testing import CliRunner

pytest.importorskip("diff_protein")
from diff_protein.bench.runner import generate_synthetic
from diff_protein.data.synthetic import SyntheticBackboneConfig
from diff_protein.io import read_backbone, write_backbone

runner = CliRunner()
TINY = ["--node-dim", "32", "--num-blocks", "1", "--set", "backbone.pair_dim=16"]


def _ca_stats(paths) -> tuple[float, float]:
    """Mean consecutive CA-CA distance (A) and mean radius of gyration (A) over the chains in ``paths``."""
    bonds, rgs = [], []
    for path in paths:
        ca = torch.as_tensor(read_backbone(path).coords[:, 1], dtype=torch.float64)
        bonds.append((ca[1:] - ca[:-1]).norm(dim=-1).mean().item())
        rgs.append((ca - ca.mean(0)).pow(2).sum(-1).mean().sqrt().item())
    return float(np.mean(bonds)), float(np.mean(rgs))


@pytest.mark.slow
def test_a_folder_of_structures_trains_and_samples_are_chains(tmp_path):
    data = tmp_path / "my_structures"
    data.mkdir()
    chains = generate_synthetic(
        SyntheticBackboneConfig(num_samples=12, min_length=60, max_length=72, topologies=("helical_hairpin",))
    )
    for i, chain in enumerate(chains):
        write_backbone(data / f"chain_{i:02d}.pdb", chain.atoms.numpy())
    data_bond, data_rg = _ca_stats(sorted(data.glob("*.pdb")))

    run = tmp_path / "run"
    result = runner.invoke(
        build_app(),
        [
            "protein",
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--steps",
            "300",
            "--device",
            "cpu",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (run / "pipeline" / "pipeline.json").is_file()

    samples = tmp_path / "samples"
    result = runner.invoke(
        build_app(),
        ["protein", "sample", "--pipeline", str(run / "pipeline"), "--out", str(samples), "--num", "4",
         "--length", "64", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(samples.glob("*.pdb"))
    assert len(files) == 4, [p.name for p in samples.iterdir()]
    bond, rg = _ca_stats(files)

    # CA positions from the prior: independent normal coordinates, ~10 A per axis (the flow's unit is 1 nm)
    prior = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 10.0
    noise_bond = (prior[1:] - prior[:-1]).norm(dim=-1).mean().item()
    assert abs(data_bond - 3.8) < 0.05
    assert abs(bond - data_bond) < 0.15 * abs(noise_bond - data_bond), (bond, data_bond, noise_bond)
    assert abs(rg - data_rg) < 0.5 * data_rg, (rg, data_rg)
