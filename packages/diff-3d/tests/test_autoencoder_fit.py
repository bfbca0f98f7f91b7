"""The splat autoencoder learns: a few seconds of training on three primitives must reconstruct each one (its shape
by Chamfer distance, closer to its own input than to the others, and its colour).

A regression test of the quick bench's failure (reconstructions were an average blob and the colour came late):
the autoencoders start with a narrow posterior and decode log-scales around a prior; without those the same
steps leave the reconstructions far off.
"""

import torch
from diff_3d.data.primitives import Primitive, surface_gaussians
from diff_3d.metrics import chamfer_distance
from diff_3d.models import L3DGConfig, VoxelVAE
from diff_3d.models.layout import COLOUR

SHAPES = [Primitive("sphere", "red"), Primitive("cube", "blue"), Primitive("torus", "green")]


def overfit(config: L3DGConfig, steps: int = 150) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.stack([surface_gaussians(s, 256, g).to_vector() for s in SHAPES]).float()
    torch.manual_seed(0)
    model = VoxelVAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        loss, _ = model.loss(x, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().fit_scaling(x)
    return x, model.decode_latents(model.encode_latents(x), 256)


def small(**overrides) -> L3DGConfig:
    return L3DGConfig(grid_size=16, downsample=2, channels=8, latent_channels=4, **overrides)


def reconstruction_errors(x: torch.Tensor, rec: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Chamfer distances ``(3, 3)`` reconstruction i vs input j, and the colour error of each reconstruction."""
    cd = torch.tensor([[float(chamfer_distance(r[:, :3], y[:, :3])) for y in x] for r in rec])
    colour = torch.stack([(r[:, COLOUR].mean(0) - y[:, COLOUR].mean(0)).abs().max() for r, y in zip(rec, x)])
    return cd, colour


def test_the_voxel_autoencoder_reconstructs_three_primitives_in_a_few_seconds():
    x, rec = overfit(small())
    cd, colour = reconstruction_errors(x, rec)
    # measured 0.004-0.005 (two surface samples of one shape: ~0.003); without the fixes 0.02-0.07 after 100 steps
    assert float(cd.diagonal().max()) < 0.01, cd
    assert torch.equal(cd.argmin(dim=1), torch.arange(3)), cd  # each is its own shape, not an average one
    # SH DC units, the three colours are >= 1.5 apart; measured <= 0.07, without the fixes 0.8-1.9 (all three
    # reconstructions then nearest the torus)
    assert float(colour.max()) < 0.2, colour


def test_without_the_fixes_the_same_steps_do_not_get_there():
    x, rec = overfit(small(initial_logvar=0.0, scale_prior=1.0))
    cd, colour = reconstruction_errors(x, rec)
    assert float(cd.diagonal().max()) >= 0.01 or float(colour.max()) >= 0.2
