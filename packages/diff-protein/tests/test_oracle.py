"""Oracle checks of the backbone pipeline on a real (synthetic, ideal-geometry) chain.

(a) an exact denoiser that always returns the clean frames of one chain: sampling with FrameDiff and
FrameFlow returns exactly that chain, and the state just before the last step already lies within
the forward marginal's spread of it; (b) corrupting the chain at ``t`` gives the analytic forward
marginals (IGSO(3) / geodesic rotation angles, translation standard deviations); (c) the training
loss of the exact denoiser is ~0 and grows when its prediction is perturbed; (d) every loss term
reaches the network's rotation updates (a detached rotation head never learns: issue #8).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from diff_protein.data.synthetic import generate_backbone
from diff_protein.diffusion import FrameDiffusion, FrameFlow
from diff_protein.diffusion.objective import BackboneObjective, BackboneObjectiveConfig
from diff_protein.diffusion.sampling import sample_frames, sampling_grid
from diff_protein.frames import Rigid, backbone_from_frames, frames_from_backbone
from diff_protein.metrics import kabsch_rmsd
from diff_protein.models.ipa import FrameDenoiser, FrameDenoiserConfig
from diffcore.manifolds import igso3, so3
from torch import nn

LENGTH = 28


@pytest.fixture(scope="module")
def chain() -> Rigid:
    """Clean frames ``(L,)`` float64 of a synthetic helical hairpin, CA centroid at the origin."""
    bb = generate_backbone("helical_hairpin", LENGTH, torch.Generator().manual_seed(3))
    atoms = bb.atoms.double()
    frames = frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    return Rigid(frames.rots, frames.trans - frames.trans.mean(0))


class ExactDenoiser(nn.Module):
    """Predicts the given clean frames whatever its input: the exact denoiser of a one-chain data set."""

    def __init__(self, target: Rigid) -> None:
        super().__init__()
        self.target = target
        self.dummy = nn.Parameter(torch.zeros((), dtype=target.trans.dtype))

    def forward(self, rots, trans, t, mask=None, fixed_mask=None, self_cond=None) -> Rigid:
        b = rots.shape[0]
        return Rigid(self.target.rots.expand(b, *self.target.rots.shape), self.target.trans.expand(b, -1, -1))


def _ca_ca(frames: Rigid) -> torch.Tensor:
    ca = backbone_from_frames(frames)[..., 1, :]
    return (ca[..., 1:, :] - ca[..., :-1, :]).norm(dim=-1)


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_exact_denoiser_samples_the_chain(proc, chain: Rigid) -> None:
    frames = sample_frames(
        ExactDenoiser(chain), proc, 4, LENGTH, steps=50, generator=torch.Generator().manual_seed(0)
    )
    assert (_ca_ca(frames) - 3.80).abs().max() < 0.01
    ref = backbone_from_frames(chain)[:, 1].numpy()
    for atoms in backbone_from_frames(frames):
        assert kabsch_rmsd(atoms[:, 1].numpy(), ref) < 1e-6


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_exact_denoiser_trajectory_reaches_the_chain(proc, chain: Rigid) -> None:
    """Before the final jump to the prediction, the state at ``min_t`` is as close to the chain as the
    forward marginal at ``min_t`` says (rotation angle and translation error)."""
    b, min_t = 32, 0.01
    mask = torch.ones(b, LENGTH, dtype=torch.bool)
    target = Rigid(chain.rots.expand(b, -1, -1, -1), chain.trans.expand(b, -1, -1))
    g = torch.Generator().manual_seed(1)
    frames = proc.prior((b, LENGTH), g, torch.float64, "cpu")
    for t, s in itertools.pairwise(sampling_grid(100, min_t)[:-1]):
        frames = proc.step(frames, target, t, s, mask, g)
    angle = so3.geodesic_distance(frames.rots, target.rots).mean()
    err = (frames.trans - target.trans).pow(2).sum(-1).mean().sqrt() * proc.coordinate_scale
    ref = proc.corrupt(target, torch.full((b,), min_t, dtype=torch.float64), mask, g)
    ref_angle = so3.geodesic_distance(ref.rots, target.rots).mean()
    ref_err = (ref.trans - target.trans).pow(2).sum(-1).mean().sqrt() * proc.coordinate_scale
    if isinstance(proc, FrameDiffusion):  # stochastic: the reverse SDE lands on the marginal at min_t
        assert abs(float(angle / ref_angle) - 1) < 0.25 and abs(float(err / ref_err) - 1) < 0.1
    else:  # the Euler flow is at least as close as the conditional path at min_t
        assert angle < 1.1 * ref_angle and err < 1.1 * ref_err


def test_diffusion_rotation_angles_follow_igso3(chain: Rigid) -> None:
    """Kolmogorov distance between the corrupted angles and the IGSO(3) angle CDF at sigma(t)."""
    proc = FrameDiffusion()
    n = 100
    frames0 = Rigid(chain.rots.expand(n, -1, -1, -1), chain.trans.expand(n, -1, -1))
    mask = torch.ones(n, LENGTH, dtype=torch.bool)
    for t in (0.1, 0.5, 0.9):
        ft = proc.corrupt(
            frames0, torch.full((n,), t, dtype=torch.float64), mask, torch.Generator().manual_seed(2)
        )
        omega = so3.geodesic_distance(frames0.rots, ft.rots).flatten().sort().values
        sigma = float(proc.rot_schedule.sigma(t))
        grid = torch.linspace(0, math.pi, 8001, dtype=torch.float64)[1:]
        dens = igso3.angle_log_density(grid, sigma).exp()
        cdf = torch.cumulative_trapezoid(dens, grid)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), cdf / cdf[-1]])
        model = torch.from_numpy(np.interp(omega.numpy(), grid.numpy(), cdf.numpy()))
        emp = torch.arange(1, len(omega) + 1, dtype=torch.float64) / len(omega)
        assert (model - emp).abs().max() < 1.63 / math.sqrt(len(omega)) + 2e-3  # KS at 1 %


def test_flow_rotation_angles_are_a_fraction_of_a_haar_angle(chain: Rigid) -> None:
    """``R_t = R_0 exp(t log(R_0^T R_1))``: the angle to ``R_0`` is ``t`` times a Haar angle, whose
    CDF is ``(w - sin w) / pi``."""
    proc = FrameFlow()
    n, t = 100, 0.6
    frames0 = Rigid(chain.rots.expand(n, -1, -1, -1), chain.trans.expand(n, -1, -1))
    ft = proc.corrupt(
        frames0,
        torch.full((n,), t, dtype=torch.float64),
        torch.ones(n, LENGTH, dtype=torch.bool),
        torch.Generator().manual_seed(3),
    )
    w = (so3.geodesic_distance(frames0.rots, ft.rots).flatten() / t).sort().values
    model = (w - torch.sin(w)) / math.pi
    emp = torch.arange(1, len(w) + 1, dtype=torch.float64) / len(w)
    assert (model - emp).abs().max() < 1.63 / math.sqrt(len(w))


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_translation_marginal_std(proc, chain: Rigid) -> None:
    n, t = 400, 0.4
    frames0 = Rigid(chain.rots.expand(n, -1, -1, -1), chain.trans.expand(n, -1, -1))
    ft = proc.corrupt(
        frames0,
        torch.full((n,), t, dtype=torch.float64),
        torch.ones(n, LENGTH, dtype=torch.bool),
        torch.Generator().manual_seed(4),
    )
    x0, xt = chain.trans * proc.coordinate_scale, ft.trans * proc.coordinate_scale
    tt = torch.tensor(t, dtype=torch.float64)
    if isinstance(proc, FrameDiffusion):
        alpha, sigma = float(proc.trans_schedule.alpha(tt)), float(proc.trans_schedule.sigma(tt))
    else:
        alpha, sigma = 1 - t, t
    noise = xt - alpha * x0
    assert noise.mean(1).abs().max() < 1e-10  # centred noise: the centroid stays at the origin
    expected = sigma * math.sqrt((LENGTH - 1) / LENGTH)
    assert abs(float(noise.std()) - expected) < 0.02 * expected


def _batch(chain: Rigid, b: int) -> dict[str, torch.Tensor]:
    return {
        "rots": chain.rots.expand(b, -1, -1, -1).clone(),
        "trans": chain.trans.expand(b, -1, -1).clone(),
        "mask": torch.ones(b, LENGTH, dtype=torch.bool),
    }


class _Perturbed(ExactDenoiser):
    def __init__(self, target: Rigid, angle: float, shift: float) -> None:
        g = torch.Generator().manual_seed(5)
        axis = torch.nn.functional.normalize(torch.randn(LENGTH, 3, generator=g, dtype=torch.float64), dim=-1)
        rots = target.rots @ so3.exp_map(angle * axis)
        trans = target.trans + shift * torch.randn(LENGTH, 3, generator=g, dtype=torch.float64)
        super().__init__(Rigid(rots, trans))


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_loss_of_exact_denoiser_is_zero(proc, chain: Rigid) -> None:
    obj = BackboneObjective(proc, BackboneObjectiveConfig(self_cond_prob=0.0))
    batch = _batch(chain, 16)
    g = torch.Generator().manual_seed(6)
    loss, logs = obj(ExactDenoiser(chain), batch, g)
    assert float(loss) < 1e-10 and max(logs.values()) < 1e-10
    for angle, shift in ((0.05, 0.0), (0.0, 0.3), (0.2, 1.0)):
        worse, logs = obj(_Perturbed(chain, angle, shift), batch, torch.Generator().manual_seed(6))
        assert float(worse) > 1e-4
        if angle:
            assert logs["rot_loss"] > 1e-4
        if shift:
            assert logs["trans_loss"] > 1e-4


def test_every_block_rotation_update_gets_a_gradient(chain: Rigid) -> None:
    """The bug of issue #8: rotations were detached after every block, so the predicted rotations had
    no gradient and the network never learned to denoise them."""
    torch.manual_seed(0)
    cfg = FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=3, num_heads=2, head_dim=4)
    net = FrameDenoiser(cfg).double()
    proc = FrameDiffusion()
    f0 = Rigid(chain.rots[None], chain.trans[None])
    t = torch.tensor([0.3], dtype=torch.float64)
    ft = proc.corrupt(f0, t, torch.ones(1, LENGTH, dtype=torch.bool), torch.Generator().manual_seed(7))
    pred = net(ft.rots, ft.trans, t)
    assert pred.rots.requires_grad
    proc.rotation_loss(pred, f0, ft, t).mean().backward()
    for block in net.blocks:
        assert block.update.linear.weight.grad[:3].abs().sum() > 0  # quaternion rows (b, c, d)
