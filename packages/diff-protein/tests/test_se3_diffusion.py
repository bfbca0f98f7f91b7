"""FrameDiff and FrameFlow processes: marginals, analytic reverse steps, oracle sampling, motif inpainting."""

from __future__ import annotations

import math

import pytest
import torch
from diff_protein.diffusion import FrameDiffusion, FrameFlow
from diff_protein.diffusion.objective import BackboneObjective, collate_frames, random_motif_mask
from diff_protein.diffusion.sampling import Motif, sample_frames, sampling_grid
from diff_protein.frames import Rigid
from diff_protein.models.ipa import FrameDenoiser, FrameDenoiserConfig
from diffcore.manifolds import igso3, so3
from torch import nn


def _frames(b: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Rigid:
    g = torch.Generator().manual_seed(seed)
    rots = so3.random_rotations(b * n, g, dtype).reshape(b, n, 3, 3)
    trans = torch.randn(b, n, 3, generator=g, dtype=dtype) * 8.0
    return Rigid(rots, trans - trans.mean(1, keepdim=True))


def _first(frames: Rigid) -> Rigid:
    return Rigid(frames.rots[0], frames.trans[0])


def test_diffusion_rotation_marginal_is_igso3() -> None:
    proc = FrameDiffusion()
    f0 = _frames(1, 2000)
    t = torch.tensor([0.5], dtype=torch.float64)
    ft = proc.corrupt(f0, t, torch.ones(1, 2000, dtype=torch.bool), torch.Generator().manual_seed(1))
    omega = so3.geodesic_distance(f0.rots, ft.rots)[0]
    sigma = float(proc.rot_schedule.sigma(0.5))
    grid = torch.linspace(1e-4, math.pi, 4000, dtype=torch.float64)
    dens = igso3.angle_log_density(grid, sigma).exp()
    expected = float(torch.trapezoid(grid * dens, grid) / torch.trapezoid(dens, grid))
    assert abs(float(omega.mean()) - expected) < 0.04


def test_diffusion_translation_marginal_and_centring() -> None:
    proc = FrameDiffusion()
    f0 = Rigid(
        torch.eye(3, dtype=torch.float64).expand(64, 50, 3, 3), torch.zeros(64, 50, 3, dtype=torch.float64)
    )
    t = torch.full((64,), 0.3, dtype=torch.float64)
    ft = proc.corrupt(f0, t, torch.ones(64, 50, dtype=torch.bool), torch.Generator().manual_seed(0))
    x = ft.trans * proc.coordinate_scale
    assert x.mean(1).abs().max() < 1e-12  # noise lives in the zero-centroid subspace
    sigma = float(proc.trans_schedule.sigma(torch.tensor(0.3, dtype=torch.float64)))
    # centring removes one of 50 degrees of freedom per axis
    assert abs(float(x.std()) - sigma * math.sqrt(49 / 50)) < 0.02 * sigma


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_motif_residues_are_never_corrupted(proc) -> None:
    f0 = _frames(3, 20)
    fixed = torch.zeros(3, 20, dtype=torch.bool)
    fixed[:, 4:9] = True
    ft = proc.corrupt(
        f0, torch.full((3,), 0.9, dtype=torch.float64), ~fixed, torch.Generator().manual_seed(0)
    )
    assert torch.equal(ft.rots[fixed], f0.rots[fixed]) and torch.equal(ft.trans[fixed], f0.trans[fixed])
    assert (ft.trans[~fixed] - f0.trans[~fixed]).abs().max() > 1.0


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_rotation_loss_zero_only_at_truth(proc) -> None:
    f0 = _frames(2, 10)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    ft = proc.corrupt(f0, t, torch.ones(2, 10, dtype=torch.bool), torch.Generator().manual_seed(0))
    assert proc.rotation_loss(f0, f0, ft, t).abs().max() < 1e-10
    other = _frames(2, 10, seed=5)
    assert proc.rotation_loss(other, f0, ft, t).min() > 0


def test_diffusion_translation_step_has_the_forward_marginal() -> None:
    """With the oracle x0, the DDPM posterior step from q_t lands on q_s (Ho et al. Eq. 6-7)."""
    proc = FrameDiffusion()
    b, n = 96, 30
    f0 = Rigid(
        torch.eye(3, dtype=torch.float64).expand(b, n, 3, 3), torch.zeros(b, n, 3, dtype=torch.float64)
    )
    mask = torch.ones(b, n, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    ft = proc.corrupt(f0, torch.full((b,), 0.6, dtype=torch.float64), mask, g)
    fs = proc.step(ft, f0, 0.6, 0.2, mask, g)
    sigma_s = float(proc.trans_schedule.sigma(torch.tensor(0.2, dtype=torch.float64)))
    x = fs.trans * proc.coordinate_scale
    assert abs(float(x.std()) - sigma_s * math.sqrt((n - 1) / n)) < 0.04 * sigma_s


def test_flow_step_stays_on_the_conditional_path() -> None:
    proc = FrameFlow()
    f0 = _frames(2, 16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    ft = proc.corrupt(f0, torch.full((2,), 0.8, dtype=torch.float64), mask, torch.Generator().manual_seed(0))
    fs = proc.step(ft, f0, 0.8, 0.3, mask)
    d_t = so3.geodesic_distance(f0.rots, ft.rots)
    d_s = so3.geodesic_distance(f0.rots, fs.rots)
    torch.testing.assert_close(d_s, d_t * 0.3 / 0.8, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(fs.trans - f0.trans, (ft.trans - f0.trans) * 0.3 / 0.8)


class _Oracle(nn.Module):
    """Predicts the same clean frames whatever the input (the exact denoiser of a point mass)."""

    def __init__(self, target: Rigid) -> None:
        super().__init__()
        self.target = target
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, rots, trans, t, mask=None, fixed_mask=None, self_cond=None) -> Rigid:
        b = rots.shape[0]
        return Rigid(self.target.rots.expand(b, -1, -1, -1), self.target.trans.expand(b, -1, -1))


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_sampling_with_oracle_returns_the_target(proc) -> None:
    target = _first(_frames(1, 12))
    frames = sample_frames(_Oracle(target), proc, 3, 12, steps=8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(frames.trans, target.trans.expand(3, -1, -1))
    torch.testing.assert_close(frames.rots, target.rots.expand(3, -1, -1, -1))


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_motif_inpainting_keeps_the_motif(proc) -> None:
    n = 15
    motif_frames = _first(_frames(1, n, seed=3))
    fixed = torch.zeros(n, dtype=torch.bool)
    fixed[2:6] = True
    other = _first(_frames(1, n, seed=4))
    frames = sample_frames(
        _Oracle(other),
        proc,
        2,
        n,
        steps=5,
        motif=Motif(motif_frames, fixed),
        generator=torch.Generator().manual_seed(0),
    )
    centred = motif_frames.trans - motif_frames.trans[fixed].mean(0)
    torch.testing.assert_close(frames.trans[:, fixed], centred[fixed].expand(2, -1, -1))
    torch.testing.assert_close(frames.rots[:, fixed], motif_frames.rots[fixed].expand(2, -1, -1, -1))
    torch.testing.assert_close(frames.trans[:, ~fixed], other.trans[~fixed].expand(2, -1, -1))


def test_sampling_grid_and_errors() -> None:
    grid = sampling_grid(5, 0.01)
    assert grid[0] == 1.0 and grid[-2] == pytest.approx(0.01) and grid[-1] == 0.0 and len(grid) == 6
    with pytest.raises(ValueError, match="steps"):
        sampling_grid(0)
    with pytest.raises(ValueError, match="t, s"):
        FrameFlow().step(_frames(1, 3), _frames(1, 3), 0.2, 0.5, torch.ones(1, 3, dtype=torch.bool))


def test_random_motif_mask_respects_padding() -> None:
    mask = torch.zeros(4, 30, dtype=torch.bool)
    mask[:, :20] = True
    fixed = random_motif_mask(mask, torch.Generator().manual_seed(0))
    assert not fixed[:, 20:].any() and fixed.any(-1).all()
    assert (fixed.sum(-1) <= 0.3 * 20 + 3).all()


@pytest.mark.parametrize("proc", [FrameDiffusion(), FrameFlow()], ids=["diffusion", "flow"])
def test_objective_gives_finite_loss_and_gradients(proc) -> None:
    torch.manual_seed(0)
    items = []
    for n in (9, 12):
        f = _first(_frames(1, n, seed=n, dtype=torch.float32))
        items.append({"rots": f.rots, "trans": f.trans})
    batch = collate_frames(items)
    assert batch["mask"].sum().item() == 21
    net = FrameDenoiser(FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4))
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    obj = BackboneObjective(proc, BackboneObjectiveConfig(self_cond_prob=1.0, motif_prob=1.0))
    loss, logs = obj(net, batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and set(logs) >= {"rot_loss", "trans_loss", "bb_atom_loss", "dist_loss"}
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_objective_draws_training_times_in_its_window() -> None:
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    seen: list[torch.Tensor] = []

    class RecordingFlow(FrameFlow):  # the real process, remembering the times it corrupts to
        def corrupt(self, frames0, t, diffuse_mask, generator=None):
            seen.append(t.clone())
            return super().corrupt(frames0, t, diffuse_mask, generator)

    f = _first(_frames(1, 10, seed=3, dtype=torch.float32))
    batch = collate_frames([{"rots": f.rots, "trans": f.trans}] * 64)
    net = FrameDenoiser(FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4))
    proc = RecordingFlow()
    BackboneObjective(proc, BackboneObjectiveConfig(min_t=0.7, max_t=0.9))(
        net, batch, torch.Generator().manual_seed(0)
    )
    t = torch.cat(seen)
    assert t.min() >= 0.7 and t.max() <= 0.9 and t.max() - t.min() > 0.1  # the whole window, nothing outside
    for bad in ({"min_t": 0.5, "max_t": 0.5}, {"max_t": 1.5}, {"min_t": -0.1}):
        with pytest.raises(ValueError, match="min_t, max_t"):
            BackboneObjectiveConfig(**bad)


def test_flow_exponential_rotation_schedule() -> None:
    """FrameFlow's exp schedule: each Euler step moves the rotation a fraction ``c (t - s)`` of the way to
    the prediction (velocity ``c log(R_t^T R0_hat)``), translations as the plain flow."""
    from diff_protein.diffusion import FrameFlowConfig

    proc = FrameFlow(FrameFlowConfig(rotation_schedule="exp", rotation_rate=10.0))
    f0, ft = _frames(2, 16, seed=1), _frames(2, 16, seed=2)
    mask = torch.ones(2, 16, dtype=torch.bool)
    fs = proc.step(ft, f0, 0.8, 0.78, mask)
    d_t = so3.geodesic_distance(f0.rots, ft.rots)
    d_s = so3.geodesic_distance(f0.rots, fs.rots)
    torch.testing.assert_close(d_s, d_t * (1 - 10 * 0.02), atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(fs.trans - f0.trans, (ft.trans - f0.trans) * 0.78 / 0.8)
    fs = proc.step(ft, f0, 0.8, 0.6, mask)  # c (t - s) > 1: lands on the prediction
    assert so3.geodesic_distance(f0.rots, fs.rots).max() < 1e-6
    with pytest.raises(ValueError, match="rotation_schedule"):
        FrameFlowConfig(rotation_schedule="cosine")


def test_flow_aux_losses_are_time_normalised() -> None:
    """FrameFlow divides the auxiliary losses like its vector-field loss, by max(t, t_clip)^2."""
    from diff_protein.diffusion.base import AuxLossConfig
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    proc = FrameFlow()
    f0 = _first(_frames(1, 12, dtype=torch.float32))
    pred = Rigid(f0.rots[None], f0.trans[None] + 0.5)
    cfg = BackboneObjectiveConfig(rot_weight=0.0, trans_weight=0.0, aux=AuxLossConfig(t_max=1.0))
    obj = BackboneObjective(proc, cfg)
    mask = torch.ones(1, 12, dtype=torch.bool)
    frames0 = Rigid(f0.rots[None], f0.trans[None])
    losses = [
        float(obj._loss(pred, frames0, frames0, torch.tensor([t]), mask, mask)[0]) for t in (0.05, 0.2, 0.4)
    ]
    assert losses[0] > 0
    assert losses[0] / losses[1] == pytest.approx(4.0, rel=1e-4)  # 0.2^2 / 0.1^2 (t = 0.05 is clipped)
    assert losses[1] / losses[2] == pytest.approx(4.0, rel=1e-4)  # 0.4^2 / 0.2^2


def test_collate_pads_to_one_length_and_rejects_longer_chains() -> None:
    items = [{"rots": torch.eye(3).expand(n, 3, 3), "trans": torch.randn(n, 3)} for n in (5, 7)]
    batch = collate_frames(items, pad_to=10)
    assert batch["trans"].shape == (2, 10, 3) and batch["mask"].sum().item() == 12
    assert torch.equal(batch["rots"][0, 9], torch.eye(3)) and not batch["trans"][:, 7:].any()
    with pytest.raises(ValueError, match="pad_to"):
        collate_frames(items, pad_to=6)


def test_random_motif_mask_spans_are_contiguous_and_cover_5_to_30_percent() -> None:
    mask = torch.zeros(256, 60, dtype=torch.bool)
    lengths = torch.randint(20, 61, (256,), generator=torch.Generator().manual_seed(1))
    for i, n in enumerate(lengths.tolist()):
        mask[i, :n] = True
    fixed = random_motif_mask(mask, torch.Generator().manual_seed(2))
    covered = fixed.sum(-1).float() / lengths
    runs = (fixed[:, 1:] & ~fixed[:, :-1]).sum(-1) + fixed[:, 0].long()  # contiguous spans per row
    assert fixed.any(-1).all() and not (fixed & ~mask).any()
    assert covered.max() <= 0.31 and covered.min() >= 0.0 and runs.max() <= 3 and runs.min() >= 1
    assert set(runs.tolist()) == {1, 2, 3}  # (overlapping spans merge, so 3 appears less often than 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_objective_replayed_from_cuda_graphs_matches_eager() -> None:
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    items = []
    for n in (18, 24, 21, 24):
        f = _first(_frames(1, n, seed=n, dtype=torch.float32))
        items.append({"rots": f.rots, "trans": f.trans})
    batch = {k: v.cuda() for k, v in collate_frames(items, pad_to=24).items()}
    torch.manual_seed(0)
    net = FrameDenoiser(FrameDenoiserConfig(node_dim=32, pair_dim=16, num_blocks=2, num_heads=4, head_dim=8))
    net = net.cuda().train()
    cfg = BackboneObjectiveConfig(self_cond_prob=0.5, motif_prob=0.5)
    eager, graphed = (
        BackboneObjective(FrameFlow(), cfg),
        BackboneObjective(
            FrameFlow(), BackboneObjectiveConfig(self_cond_prob=0.5, motif_prob=0.5, cuda_graphs=True)
        ),
    )

    def loss_and_grads(objective: BackboneObjective, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # A function, so that the step's autograd graph (and its parameters' gradient nodes, which remember
        # the stream they ran on) is gone before the next call: a graph kept alive across the first graphed
        # call makes its capture fail with a CUDA stream error (GraphedCall names that cause).
        torch.manual_seed(seed)
        loss, _ = objective(net, batch, torch.Generator(device="cuda").manual_seed(seed))
        loss.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in net.parameters()]
        net.zero_grad(set_to_none=True)  # (the last block's pair update gets no gradient)
        return loss.detach(), grads

    for seed in range(4):  # both branches of the self-conditioning coin
        (loss_e, grads_e), (loss_g, grads_g) = (loss_and_grads(o, seed) for o in (eager, graphed))
        torch.testing.assert_close(loss_g, loss_e, rtol=1e-4, atol=1e-6)
        for a, b in zip(grads_g, grads_e, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_clash_guidance_pushes_clashing_residues_apart_and_nothing_else() -> None:
    from diff_protein.diffusion.sampling import ClashGuidance

    ca = torch.tensor(
        [[[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [0.0, 2.0, 0], [20.0, 0, 0]]], dtype=torch.float64
    )
    movable = torch.ones(1, 5, dtype=torch.bool)
    guide = ClashGuidance(radius=4.0, iterations=20, step_size=0.25)
    out = guide.push_apart(ca, movable)
    assert torch.linalg.norm(out[0, 0] - out[0, 3]) > 3.9  # residues 0 and 3 (3 apart, 2 A) separated
    assert torch.equal(out[0, 4], ca[0, 4])  # far from everything: untouched
    assert torch.allclose(out[0, 1:3], ca[0, 1:3])  # chain neighbours closer than radius are not clashes
    fixed = movable.clone()
    fixed[0, 0] = False  # a fixed residue never moves but still pushes
    held = guide.push_apart(ca, fixed)
    assert torch.equal(held[0, 0], ca[0, 0]) and torch.linalg.norm(held[0, 3] - ca[0, 0]) > 3.9
    for bad in ({"radius": 0.0}, {"t_min": 1.0}, {"iterations": 0}, {"min_separation": 0}):
        with pytest.raises(ValueError):
            ClashGuidance(**bad)


def test_sampling_with_clash_guidance_runs_and_changes_the_samples() -> None:
    from diff_protein.diffusion.sampling import ClashGuidance

    torch.manual_seed(0)
    net = FrameDenoiser(
        FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4)
    ).eval()
    plain = sample_frames(net, FrameFlow(), 2, 12, steps=4, generator=torch.Generator().manual_seed(0))
    guided = sample_frames(net, FrameFlow(), 2, 12, steps=4, generator=torch.Generator().manual_seed(0),
                           clash_guidance=ClashGuidance(radius=12.0, t_min=0.0))  # fmt: skip
    assert torch.isfinite(guided.trans).all() and not torch.allclose(plain.trans, guided.trans)


def test_clash_guidance_ignores_padding() -> None:
    from diff_protein.diffusion.sampling import ClashGuidance

    ca = torch.tensor([[[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [0.5, 0.5, 0]]], dtype=torch.float64)
    present = torch.tensor([[True, True, True, False]])
    out = ClashGuidance(radius=4.0).push_apart(ca, present, present)
    assert torch.equal(out, ca)  # the only clash is with a padding position, which neither moves nor pushes


def test_clash_loss_is_zero_on_the_data_and_penalises_only_compressed_far_pairs() -> None:
    from diff_protein.diffusion.base import clash_loss

    true = torch.tensor(
        [[[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [11.4, 0, 0], [15.2, 0, 0]]], dtype=torch.float64
    )
    mask = torch.ones(1, 5, dtype=torch.bool)
    assert float(clash_loss(true, true, mask, radius=4.0)) == 0.0
    stretched = true * 1.5  # pairs further apart than in the data: no penalty
    assert float(clash_loss(stretched, true, mask, radius=4.0)) == 0.0
    packed = true.clone()
    packed[0, 4] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # residue 4 on top of residue 0
    packed.requires_grad_(True)
    loss = clash_loss(packed, true, mask, radius=4.0)
    # Pairs (0, 4) at 1.0 A and (1, 4) at 2.8 A (both far in the chain) are compressed below 4 A.
    expected = ((4.0 - 1.0) ** 2 + (4.0 - 2.8) ** 2) / 100.0 / 5
    assert float(loss.detach()) == pytest.approx(expected)
    loss.backward()
    assert packed.grad[0, 4, 0] < 0  # descending the loss moves residue 4 away from residues 0 and 1 (+x)
    padded = torch.tensor([[True, True, True, True, False]])
    assert float(clash_loss(packed.detach(), true, padded, radius=4.0)) == 0.0  # padding never clashes
    from diff_protein.diffusion.base import AuxLossConfig

    with pytest.raises(ValueError, match="clash"):
        AuxLossConfig(clash=-1.0)


def test_objective_logs_the_clash_loss_when_it_is_on() -> None:
    from diff_protein.diffusion.base import AuxLossConfig
    from diff_protein.diffusion.objective import BackboneObjectiveConfig

    items = [
        {"rots": f.rots, "trans": f.trans}
        for f in (_first(_frames(1, n, seed=n, dtype=torch.float32)) for n in (9, 12))
    ]
    batch = collate_frames(items)
    net = FrameDenoiser(FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4))
    cfg = BackboneObjectiveConfig(aux=AuxLossConfig(t_max=1.0, clash=1.0))
    loss, logs = BackboneObjective(FrameFlow(), cfg)(net, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and "clash_loss" in logs and float(logs["clash_loss"]) >= 0
    _, plain = BackboneObjective(FrameFlow())(net, batch, torch.Generator().manual_seed(0))
    assert "clash_loss" not in plain


def test_sampling_from_given_frames_at_t_start() -> None:
    torch.manual_seed(0)
    net = FrameDenoiser(
        FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4)
    ).eval()
    proc = FrameFlow()
    plain = sample_frames(net, proc, 2, 12, steps=6, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    prior = proc.prior((2, 12), g, torch.float32, "cpu")  # the draw sample_frames makes itself
    given = sample_frames(net, proc, 2, 12, steps=6, generator=g, start=prior, t_start=1.0)
    assert torch.equal(plain.trans, given.trans) and torch.equal(plain.rots, given.rots)
    seen: list[float] = []

    class Recording(torch.nn.Module):  # the same network, remembering the times it is called at
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, rots, trans, t, **kw):
            seen.append(float(t[0]))
            return self.net(rots, trans, t, **kw)

    recording = Recording()
    late = sample_frames(
        recording, proc, 2, 12, steps=6, generator=torch.Generator(), start=prior, t_start=0.5
    )
    grid = sampling_grid(6)  # 1, 0.802, ..., 0.01, 0: the calls from 0.5 on are 0.5 and the grid below it
    assert (
        seen == pytest.approx([0.5, *[t for t in grid[:-1] if t < 0.5]]) and torch.isfinite(late.trans).all()
    )
    with pytest.raises(ValueError, match="t_start"):
        sample_frames(net, proc, 2, 12, start=prior, t_start=0.0)
    with pytest.raises(ValueError, match="start"):
        sample_frames(net, proc, 3, 12, start=prior, t_start=0.5)


def test_flow_rotation_rate_applies_only_below_its_time_window() -> None:
    """``rotation_rate_t_max``: above it rotations follow the plain geodesic ODE (a fraction ``(t - s) / t``
    of the way to the prediction per step), below it the sped-up schedule; translations are unaffected."""
    from diff_protein.diffusion import FrameFlowConfig

    proc = FrameFlow(FrameFlowConfig(rotation_rate=20.0, rotation_rate_t_max=0.7))
    f0, ft = _frames(2, 16, seed=1), _frames(2, 16, seed=2)
    mask = torch.ones(2, 16, dtype=torch.bool)
    d_t = so3.geodesic_distance(f0.rots, ft.rots)
    for t, s, frac in ((0.8, 0.78, 0.02 / 0.8), (0.7, 0.68, 20 * 0.02 / 0.7)):
        fs = proc.step(ft, f0, t, s, mask)
        torch.testing.assert_close(
            so3.geodesic_distance(f0.rots, fs.rots), d_t * (1 - frac), atol=1e-8, rtol=1e-6
        )
        torch.testing.assert_close(fs.trans - f0.trans, (ft.trans - f0.trans) * s / t)
    with pytest.raises(ValueError, match="rotation_rate_t_max"):
        FrameFlowConfig(rotation_rate_t_max=0.0)


def test_sampling_chains_of_several_lengths_in_one_padded_batch() -> None:
    """``sample_frames(mask=)``: each chain of a padded batch is sampled as it would be alone (same start,
    deterministic flow), and the padding stays identity frames at the origin."""
    torch.manual_seed(0)
    net = FrameDenoiser(FrameDenoiserConfig(node_dim=16, pair_dim=8, num_blocks=1, num_heads=2, head_dim=4))
    net = net.double().eval()
    proc = FrameFlow()
    lengths = (12, 9)
    starts = [proc.prior((1, n), torch.Generator().manual_seed(n), torch.float64) for n in lengths]
    alone = [sample_frames(net, proc, 1, n, steps=5, start=f) for n, f in zip(lengths, starts)]
    mask = torch.arange(12)[None] < torch.tensor(lengths)[:, None]
    eye, zero = (
        torch.eye(3, dtype=torch.float64).expand(1, 3, 3, 3),
        torch.zeros(1, 3, 3, dtype=torch.float64),
    )
    start = Rigid(
        torch.cat([starts[0].rots, torch.cat([starts[1].rots, eye], 1)]),
        torch.cat([starts[0].trans, torch.cat([starts[1].trans, zero], 1)]),
    )
    batch = sample_frames(net, proc, 2, 12, steps=5, start=start, mask=mask)
    for row, (n, one) in enumerate(zip(lengths, alone)):
        torch.testing.assert_close(batch.trans[row, :n], one.trans[0], atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(batch.rots[row, :n], one.rots[0], atol=1e-9, rtol=1e-9)
    assert torch.equal(batch.trans[1, 9:], zero[0]) and torch.equal(batch.rots[1, 9:], eye[0])
    with pytest.raises(ValueError, match="mask"):
        sample_frames(net, proc, 2, 12, mask=mask[:, :10])
