"""Categorical properties (chemical system, space group) beside scalar ones: packing, parsing and its one-line
errors, the adapters' no-op when a property is null, and guidance by a chemical system after a short
adapter-only fine-tune."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diff_materials.data import Crystal, CrystalDataset, collate_crystals, generate_crystals
from diff_materials.data.generated import GeneratedConfig
from diff_materials.diffusion import CrystalDiffusion, CrystalDiffusionConfig, CrystalObjective
from diff_materials.models import CrystalDenoiser, CrystalDenoiserConfig
from diff_materials.pipeline import property_row
from diff_materials.properties import (
    crystal_property_values,
    parse_property_value,
    property_mask,
    space_group_number,
)
from diffcore.rng import seeded

NAMES = ["volume_per_atom", "chemical_system", "space_group"]
KINDS = ["scalar", "chemical_system", "space_group"]


def test_a_chemical_system_is_the_multi_hot_of_its_elements_and_a_space_group_its_number():
    row = parse_property_value("chemical_system", "Ba-Ti-O")
    assert len(row) == 100 and sum(row) == 3 and row[56 - 1] == row[22 - 1] == row[8 - 1] == 1.0
    assert parse_property_value("chemical_system", "O-Ti-Ba") == row  # a set: order does not matter
    assert parse_property_value("space_group", "221") == [221.0]
    assert parse_property_value("heat_ref", "-1.5") == [-1.5]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("chemical_system", "Ba-Xx-O", "unknown element 'Xx'"),
        ("chemical_system", "Ba--O", "elements joined by '-'"),
        ("chemical_system", "Og", "unknown element 'Og'"),  # Z = 118, beyond the atom types
        ("space_group", "0", r"integer in 1\.\.230"),
        ("space_group", "231", r"integer in 1\.\.230"),
        ("space_group", "12.5", r"integer in 1\.\.230"),
        ("space_group", "Pm-3m", r"integer in 1\.\.230"),
        ("heat_ref", "low", "heat_ref expected a number"),
    ],
)
def test_bad_values_raise_one_line_naming_the_property(name, text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_property_value(name, text)
    assert str(err.value).startswith("properties: ") and "\n" not in str(err.value)


def test_property_rows_leave_free_properties_nan_and_refuse_untrained_ones():
    row = property_row(NAMES, ["space_group=225", "chemical_system=Na-Cl"])
    assert len(row) == 1 + 100 + 1 and math.isnan(row[0]) and row[-1] == 225.0
    mask = property_mask(torch.tensor([row]), KINDS)
    assert mask.tolist() == [[False, True, True]]
    with pytest.raises(ValueError, match=r"not trained on 'band_gap' \(its properties: \['volume_per_atom'"):
        property_row(NAMES, ["band_gap=1.0"])
    with pytest.raises(ValueError, match="expected name=value"):
        property_row(NAMES, ["space_group"])


def test_training_data_carry_their_space_group_from_the_data_or_from_pymatgen():
    crystals = generate_crystals(
        GeneratedConfig(kinds=("perovskite", "rocksalt", "zincblende"), num_crystals=30)
    )
    groups = {(c.num_atoms, space_group_number(c)) for c in crystals}
    # ideal prototypes: perovskite (5 atoms) Pm-3m (221), rocksalt Fm-3m (225), zincblende F-43m (216)
    assert groups == {(5, 221), (2, 225), (2, 216)}
    given = Crystal(
        crystals[0].lattice, crystals[0].frac, crystals[0].numbers, properties={"space_group": 62.0}
    )
    assert space_group_number(given) == 62  # the data's value (MP-20's spacegroup.number) wins
    values = crystal_property_values(crystals[0], ["chemical_system"])
    assert {i + 1 for i, v in enumerate(values) if v} == set(crystals[0].numbers.tolist())


def _batch(crystals, names=NAMES):
    data = CrystalDataset(crystals, names)
    b = collate_crystals([data[i] for i in range(len(data))])
    return {k: v.double() if v.is_floating_point() else v for k, v in b.items()}


def _model(num_properties: int, kinds=(), zero_adapters=True) -> CrystalDenoiser:
    with seeded(0):
        cfg = CrystalDenoiserConfig(hidden=16, layers=2, num_freqs=4, num_properties=num_properties,
                                    property_kinds=list(kinds), property_mean=[12.0] * num_properties,
                                    property_std=[3.0] * num_properties, lattice_mean=[4, 4, 4, 0, 0, 0])  # fmt: skip
        model = CrystalDenoiser(cfg).double().eval()
        if not zero_adapters:
            for p in model.encoder.adapter_parameters():
                torch.nn.init.normal_(p, std=0.3)
    return model


def _outputs(model, batch, mask=None):
    from diff_materials.diffusion import _standardised_properties

    props, known = (
        _standardised_properties(model.encoder, batch) if model.config.num_properties else (None, None)
    )
    mask = known if mask is None else mask
    t = torch.full((len(batch["num_atoms"]),), 0.6, dtype=torch.float64)
    x = torch.zeros(len(batch["num_atoms"]), 6, dtype=torch.float64)
    return model(batch["frac"], x, batch["types"], t, batch["num_atoms"], props, mask)


def test_zero_initialised_adapters_leave_the_unconditional_network_unchanged(perovskites):
    """MatterGen's adapters start at zero: the conditional network (every property given, none, or some) equals
    the pretrained unconditional one exactly, whatever the property values."""
    batch = _batch(perovskites[:4])
    base = _model(0)
    cond = _model(3, KINDS)
    shared = {k: v for k, v in base.state_dict().items() if not k.startswith("encoder.property")}
    missing, unexpected = cond.load_state_dict(shared, strict=False)
    assert not unexpected and all(
        k.startswith("encoder.property") or k.startswith("encoder.adapters") for k in missing
    )
    ref = _outputs(base, batch)
    for mask in (None, torch.zeros(4, 3, dtype=torch.bool), torch.tensor([[1, 0, 1]] * 4, dtype=torch.bool)):
        out = _outputs(cond, batch, mask)
        for k in ref:
            assert torch.equal(out[k], ref[k]), k


def test_a_null_property_ignores_its_value_and_a_given_one_changes_the_output(perovskites):
    """With trained (here random) adapters a dropped property is its null embedding, so its value cannot leak;
    given alone, each property moves the network (its adapters add to the hidden state)."""
    model = _model(3, KINDS, zero_adapters=False)
    a = _batch(perovskites[:3])
    columns = [slice(0, 1), slice(1, 101), slice(101, 102)]
    other = [a["properties"][:, :1] + 5.0, a["properties"][:, 1:101].roll(1, 0), torch.full((3, 1), 225.0)]
    for k in range(3):
        b = dict(a, properties=a["properties"].clone())
        b["properties"][:, columns[k]] = other[k]  # only property k differs
        assert not torch.equal(a["properties"], b["properties"])
        dropped = torch.ones(3, 3, dtype=torch.bool)
        dropped[:, k] = False
        out_a, out_b = _outputs(model, a, dropped), _outputs(model, b, dropped)
        assert all(torch.equal(out_a[key], out_b[key]) for key in out_a), k
        alone = ~dropped
        assert not torch.allclose(_outputs(model, a, alone)["frac"], _outputs(model, b, alone)["frac"]), k


def test_each_property_is_dropped_on_its_own_during_training(perovskites):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _model(3, KINDS)
            self.encoder = self.inner.encoder

        def forward(self, *args):
            seen.append(args[-1].clone())
            return self.inner(*args)

    batch = _batch(perovskites[:64] * 4)
    CrystalObjective(CrystalDiffusion(CrystalDiffusionConfig(task="gen")), p_uncond=0.3)(
        Spy(), batch, torch.Generator().manual_seed(0)
    )
    mask = seen[0].float()
    assert torch.allclose(mask.mean(0), torch.full((3,), 0.7), atol=0.08)
    # independent drops: the share with all three dropped is about 0.3^3, not 0.3
    assert float((mask.sum(1) == 0).float().mean()) < 0.1
    assert np.corrcoef(mask.T.numpy())[0, 1] == pytest.approx(0.0, abs=0.15)


def test_fine_tuned_chemical_system_adapters_tell_the_network_the_elements(
    tmp_path, tiny_config, perovskites
):
    """MatterGen's recipe at toy size: an unconditional network on the generated perovskites, then only its
    chemical-system adapters fine-tuned (300 steps). With every atom type masked (t near 1), the
    cross-entropy of the true elements must fall when the system is given. (Sampled element shares at this size
    move by less than their seed-to-seed spread; benchmarks/materials/materials_properties.py measures them.)"""
    from diff_materials.diffusion import MASK_TYPE
    from diff_materials.pipeline import train

    train(tiny_config(tmp_path / "base", task="gen", steps=100, limit=0, csp_fraction=0.0))
    tuned = tiny_config(tmp_path / "tuned", task="gen", steps=300, limit=0, csp_fraction=0.0,
                        properties=["chemical_system"], init_from=str(tmp_path / "base"))  # fmt: skip
    tuned.train.lr = 3e-3
    model = train(tuned).denoiser.double()
    batch = _batch(perovskites[::3][:48], ["chemical_system"])
    masked = dict(batch, types=torch.full_like(batch["types"], MASK_TYPE))
    n = len(batch["num_atoms"])
    t = torch.full((n,), 0.95, dtype=torch.float64)
    x = torch.zeros(n, 6, dtype=torch.float64)

    def cross_entropy(given: bool) -> float:
        mask = torch.full((n, 1), given)
        with torch.no_grad():
            out = model(masked["frac"], x, masked["types"], t, batch["num_atoms"], batch["properties"], mask)
        return float(torch.nn.functional.cross_entropy(out["types"][:, :100], batch["types"]))

    unconditional, conditional = cross_entropy(False), cross_entropy(True)
    assert conditional < unconditional - 0.2, (conditional, unconditional)
