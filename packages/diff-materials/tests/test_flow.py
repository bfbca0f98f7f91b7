"""Flow matching on the torus for fractional coordinates (``coords = "flow"``): exact transport by the exact
velocity, the loss's invariance to periodic translation, and a tiny training run from data to CIF files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from diff_materials.data import CrystalDataset, collate_crystals
from diff_materials.diffusion import (
    FLOW_SCALE,
    MASK_TYPE,
    CrystalDiffusion,
    CrystalDiffusionConfig,
    CrystalObjective,
    sample_crystals,
)
from diff_materials.lattice import normalise_lattice
from diff_materials.models import CrystalDenoiser, CrystalDenoiserConfig, EncoderConfig
from diffcore.manifolds import torus
from diffcore.rng import seeded
from torch import nn


class FlowOracle(nn.Module):
    """A data set of one crystal: the true lattice noise, its atom types and the exact marginal velocity of the
    geodesic flow to uniform noise. With ``x_t = x* + t d``, ``d`` uniform on [-1/2, 1/2)^3, the position fixes
    ``d``: ``v(x, t) = log_{x*}(x) / t``."""

    def __init__(self, crystal, diffusion: CrystalDiffusion):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.config = EncoderConfig()
        self.encoder.lattice_mean = torch.tensor([4.0, 4.0, 4.0, 0, 0, 0], dtype=torch.float64)
        self.encoder.lattice_std = torch.ones(6, dtype=torch.float64)
        self.w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.schedule = diffusion.lattice_schedule
        lat, n = torch.tensor(crystal.lattice)[None], torch.tensor([crystal.num_atoms])
        self.x0 = normalise_lattice(lat, n, self.encoder.lattice_mean, self.encoder.lattice_std)
        self.frac0 = torch.tensor(crystal.frac)
        self.types0 = torch.tensor(crystal.numbers - 1)

    def forward(self, frac, x, types, t, num_atoms, properties=None, property_mask=None):
        tq = t.double()
        eps = (x - self.schedule.alpha(tq)[:, None] * self.x0) / self.schedule.sigma(tq)[:, None]
        tt = tq.repeat_interleave(num_atoms)[:, None]
        velocity = torus.log_map(self.frac0.repeat(len(num_atoms), 1), frac) / tt
        logits = torch.full((len(frac), MASK_TYPE + 1), -30.0, dtype=torch.float64)
        logits[torch.arange(len(frac)), self.types0.repeat(len(num_atoms))] = 30.0
        return {"frac": velocity / FLOW_SCALE, "lattice": eps, "types": logits}


def test_euler_steps_with_the_exact_velocity_land_on_the_point_mass():
    """On the torus alone (no crystal): x_1 uniform, Euler steps of v = log_{x*}(x) / t stay on the geodesic
    and end on x* modulo 1, for any number of steps."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, generator=g, dtype=torch.float64)
    x = torch.rand(256, 3, generator=g, dtype=torch.float64)
    d = torus.log_map(target, x)
    grid = torch.linspace(1, 0, 8, dtype=torch.float64)
    for t, s in itertools.pairwise(grid.tolist()):
        x = torus.exp_map(x, -(t - s) * torus.log_map(target, x) / t)
        assert torch.allclose(torus.log_map(target, x), s * d, atol=1e-12)  # on the geodesic at time s
    assert torch.allclose(torus.wrapped_difference(x, target), torch.zeros_like(x), atol=1e-12)


def test_the_flow_sampler_builds_the_crystal_from_its_exact_velocity(perovskites):
    """The crystal sampler (centred velocity, lattice and types beside it) ends on the crystal up to a common
    translation, which the centred flow leaves free."""
    c = perovskites[4]
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(task="csp", coords="flow"))
    oracle = FlowOracle(c, diffusion)
    types = torch.tensor(np.tile(c.numbers - 1, 3))
    out = sample_crystals(
        oracle, diffusion, [5, 5, 5], types=types, steps=10, generator=torch.Generator().manual_seed(1)
    )
    for s in out:
        shift = torus.wrapped_difference(torch.tensor(s.frac), torch.tensor(c.frac))
        assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-6)  # one translation for all atoms
        assert np.allclose(s.lattice @ s.lattice.T, c.lattice @ c.lattice.T, atol=1e-6)


@pytest.mark.parametrize("coords", ["flow", "wrapped_normal"])
def test_the_loss_is_invariant_to_translating_the_crystal_across_the_cell(perovskites, coords):
    batch = collate_crystals([CrystalDataset(perovskites[:6])[i] for i in range(6)])
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    shifted = dict(
        batch, frac=torus.wrap(batch["frac"] + torch.tensor([0.37, 0.81, 0.55], dtype=torch.float64))
    )
    with seeded(0):
        model = CrystalDenoiser(
            CrystalDenoiserConfig(hidden=16, layers=2, num_freqs=4, lattice_mean=[4, 4, 4, 0, 0, 0])
        )
    objective = CrystalObjective(CrystalDiffusion(CrystalDiffusionConfig(task="gen", coords=coords)))
    a = objective(model.double(), batch, torch.Generator().manual_seed(3))[1]
    b = objective(model.double(), shifted, torch.Generator().manual_seed(3))[1]
    assert float(a["loss_frac"]) > 0.1
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9, abs=1e-12), key


def test_the_flow_target_is_the_geodesic_velocity_of_unit_scale(perovskites):
    frac0 = torch.tensor(np.concatenate([c.frac for c in perovskites[:200]]), dtype=torch.float64)
    t = torch.rand(len(frac0), 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    diffusion = CrystalDiffusion(CrystalDiffusionConfig(coords="flow"))
    frac_t, target = diffusion.noisy_frac(frac0, t, torch.Generator().manual_seed(1))
    assert torch.allclose(torus.log_map(frac0, frac_t), t * target * FLOW_SCALE, atol=1e-12)
    assert float(target.std()) == pytest.approx(1.0, abs=0.05)  # uniform noise: std of log map is 1/sqrt(12)


def test_a_flow_pipeline_trains_samples_and_writes_cif_files(tmp_path, tiny_config):
    from diff_materials import CrystalPipeline, CrystalSampleConfig, sample, train
    from diff_materials.data import read_cif_folder
    from diff_materials.pipeline import save_samples

    train(tiny_config(tmp_path / "run", task="gen", coords="flow", steps=5))
    pipe = CrystalPipeline.from_pretrained(tmp_path / "run")
    assert pipe.diffusion_config.coords == "flow"
    crystals = sample(pipe, CrystalSampleConfig(num_samples=3, steps=4, device="cpu"))
    save_samples(tmp_path / "s", crystals)
    back = read_cif_folder(tmp_path / "s")
    assert len(back.crystals) == 3 and not back.skipped
    assert all(((c.frac >= 0) & (c.frac < 1)).all() for c in back.crystals)
