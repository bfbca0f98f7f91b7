"""The IPA frame denoiser: SE(3) equivariance of frames, invariance of features, masks, save/load."""

from __future__ import annotations

import pytest
import torch
from diff_protein.frames import Rigid
from diff_protein.models.ipa import (
    NEIGHBOUR_FEATURES,
    NEIGHBOUR_RBF_CENTRES,
    FrameDenoiser,
    FrameDenoiserConfig,
    distogram,
    neighbour_geometry,
    outer_linear,
    point_distances,
)
from diffcore.manifolds import so3


def _net(self_condition: bool = True) -> FrameDenoiser:
    torch.manual_seed(0)
    cfg = FrameDenoiserConfig(
        node_dim=16,
        pair_dim=8,
        num_blocks=2,
        num_heads=2,
        head_dim=4,
        qk_points=2,
        v_points=2,
        self_condition=self_condition,
    )
    net = FrameDenoiser(cfg).double()
    for block in net.blocks:  # the backbone update starts at zero (AF2); make it move the frames
        torch.nn.init.normal_(block.update.linear.weight, std=0.2)
        torch.nn.init.normal_(block.update.linear.bias, std=0.2)
    return net


def _inputs(b: int = 2, n: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rots = so3.random_rotations(b * n, g, torch.float64).reshape(b, n, 3, 3)
    trans = torch.randn(b, n, 3, generator=g, dtype=torch.float64) * 6
    t = torch.rand(b, generator=g, dtype=torch.float64)
    sc = torch.randn(b, n, 3, generator=g, dtype=torch.float64) * 6
    return rots, trans, t, sc


@pytest.mark.parametrize("use_sc", [False, True])
def test_equivariance_float64(use_sc: bool) -> None:
    net = _net()
    rots, trans, t, sc = _inputs()
    g = torch.Generator().manual_seed(7)
    rot = so3.random_rotations(1, g, torch.float64)[0]
    shift = torch.randn(3, generator=g, dtype=torch.float64) * 20
    with torch.no_grad():
        out, single = net.trunk(rots, trans, t, self_cond=sc if use_sc else None)
        out2, single2 = net.trunk(
            rot @ rots, trans @ rot.T + shift, t, self_cond=(sc @ rot.T + shift) if use_sc else None
        )
    assert (out2.rots - rot @ out.rots).abs().max() < 1e-4
    assert (out2.trans - (out.trans @ rot.T + shift)).abs().max() < 1e-4
    assert (single2 - single).abs().max() < 1e-4
    assert (out.trans - trans).abs().max() > 1e-2  # the test is not vacuous: frames moved


def test_padding_does_not_change_real_residues() -> None:
    net = _net()
    rots, trans, t, _ = _inputs(1, 7)
    pad_r = so3.random_rotations(3, torch.Generator().manual_seed(1), torch.float64)[None]
    pad_x = torch.randn(1, 3, 3, dtype=torch.float64) * 50
    mask = torch.tensor([[True] * 7 + [False] * 3])
    with torch.no_grad():
        a = net(rots, trans, t)
        b = net(torch.cat([rots, pad_r], 1), torch.cat([trans, pad_x], 1), t, mask=mask)
    torch.testing.assert_close(b.trans[:, :7], a.trans)
    torch.testing.assert_close(b.rots[:, :7], a.rots)


def test_fixed_residues_keep_their_frames() -> None:
    net = _net()
    rots, trans, t, _ = _inputs()
    fixed = torch.zeros(2, 9, dtype=torch.bool)
    fixed[:, 2:5] = True
    with torch.no_grad():
        out = net(rots, trans, t, fixed_mask=fixed)
    torch.testing.assert_close(out.rots[fixed], rots[fixed])
    torch.testing.assert_close(out.trans[fixed], trans[fixed])
    assert (out.trans[~fixed] - trans[~fixed]).abs().max() > 1e-2


def test_rotations_stay_orthonormal_and_save_load(tmp_path) -> None:
    net = _net()
    rots, trans, t, _ = _inputs()
    with torch.no_grad():
        out = net(rots, trans, t)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(out.rots @ out.rots.transpose(-1, -2), eye.expand_as(out.rots))
    torch.testing.assert_close(torch.det(out.rots), torch.ones(2, 9, dtype=torch.float64))
    net.save_pretrained(tmp_path / "m")
    again = FrameDenoiser.from_pretrained(tmp_path / "m", dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            again(rots, trans, t).trans, out.trans, atol=1e-4, rtol=1e-5
        )  # weights pass through float32


def test_distogram_bins_and_errors() -> None:
    ca = torch.tensor([[[0.0, 0, 0], [3.8, 0, 0], [100.0, 0, 0]]])
    d = distogram(ca, num_bins=22, max_distance=21.0)
    assert d.shape == (1, 3, 3, 22) and torch.equal(d.sum(-1), torch.ones(1, 3, 3))
    assert d[0, 0, 1].argmax() == 3 and d[0, 0, 2].argmax() == 21
    with pytest.raises(ValueError, match="num_blocks"):
        FrameDenoiserConfig(num_blocks=0)
    with pytest.raises(ValueError, match="rots, trans, t"):
        _net()(torch.zeros(2, 9, 3), torch.zeros(2, 9, 3), torch.zeros(2))


def test_pair_features_equal_the_concatenated_linear_maps() -> None:
    """The pair embedding and pair updates gather weight columns and sum per-residue projections; they must
    equal the plain linear maps of the concatenated inputs (one-hot relative index, one-hot distograms,
    s_i, s_j) that they replace."""
    net = _net()
    _rots, trans, t, _ = _inputs(2, 9, seed=4)
    c = net.config
    self_cond = torch.stack(
        [torch.zeros_like(trans[0]), trans[1] + 0.7]
    )  # example 0 without self-conditioning
    mask = torch.ones(2, 9, dtype=torch.bool)
    fixed = torch.zeros_like(mask)
    s, z = net._embed(trans, t, mask, fixed, self_cond)
    n = trans.shape[1]
    idx = torch.arange(n)
    rel = (idx[None, :] - idx[:, None]).clamp(-c.max_relpos, c.max_relpos) + c.max_relpos
    rel = torch.nn.functional.one_hot(rel, 2 * c.max_relpos + 1).double()[None].expand(2, -1, -1, -1)
    has_sc = torch.tensor([0.0, 1.0], dtype=torch.float64)[:, None, None, None]
    pair = torch.cat(
        [
            rel,
            distogram(trans, c.num_bins, c.max_distance),
            distogram(self_cond, c.num_bins, c.max_distance) * has_sc,
            s[:, :, None].expand(-1, -1, n, -1),
            s[:, None].expand(-1, n, -1, -1),
        ],
        dim=-1,
    )
    torch.testing.assert_close(z, net.pair_in(pair), atol=1e-12, rtol=1e-12)
    lin = net.blocks[0].pair_update[0]
    concat = torch.cat([z, s[:, :, None].expand(-1, -1, n, -1), s[:, None].expand(-1, n, -1, -1)], dim=-1)
    torch.testing.assert_close(outer_linear(lin.weight, lin.bias, z, s), lin(concat), atol=1e-12, rtol=1e-12)


def test_point_distances_match_the_difference_formula() -> None:
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 7, 3, 4, 3, generator=g, dtype=torch.float64) * 3
    k = torch.randn(2, 5, 3, 4, 3, generator=g, dtype=torch.float64) * 3
    direct = ((q[:, :, None] - k[:, None]) ** 2).sum((-1, -2)).permute(0, 3, 1, 2)  # (B, H, I, J)
    torch.testing.assert_close(point_distances(q, k), direct, atol=1e-10, rtol=1e-10)


def test_neighbour_geometry_is_invariant_and_exact() -> None:
    """The neighbour features read relative geometry only (unchanged by a rigid motion), recover the
    exact neighbour distance, and are zero (flag included) at chain ends and across padding."""
    rots, trans, _, _ = _inputs(2, 6, seed=3)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False  # chain 1 has 4 residues
    frames = Rigid(rots, trans * 0.1)
    feats = neighbour_geometry(frames, mask, coordinate_scale=0.1)
    assert feats.shape == (2, 6, NEIGHBOUR_FEATURES)
    g = torch.Generator().manual_seed(11)
    rot = so3.random_rotations(1, g, torch.float64)[0]
    moved = Rigid(rot @ rots, (trans @ rot.T + torch.randn(3, generator=g, dtype=torch.float64)) * 0.1)
    assert (neighbour_geometry(moved, mask, coordinate_scale=0.1) - feats).abs().max() < 1e-10
    half = NEIGHBOUR_FEATURES // 2
    prev, nxt = feats[..., :half], feats[..., half:]
    # The previous neighbour's position in residue i's frame, times 4, is R_i^T (x_{i-1} - x_i) in angstrom.
    expected = rots[0, 3].T @ (trans[0, 2] - trans[0, 3])
    assert torch.allclose(prev[0, 3, :3] * 4, expected, atol=1e-10)
    assert torch.allclose(prev[0, 3, 3:12].reshape(3, 3), rots[0, 3].T @ rots[0, 2], atol=1e-10)
    assert prev[0, 0].abs().max() == 0 and nxt[0, 5].abs().max() == 0  # chain ends
    assert nxt[1, 3].abs().max() == 0 and feats[1, 4:].abs().max() == 0  # last real residue, padding
    assert prev[1, 3, -1] == 1 and nxt[1, 2, -1] == 1
    # The radial basis peaks at the bin nearest to the true distance.
    dist = float(torch.linalg.norm(trans[0, 2] - trans[0, 3]))
    rbf = prev[0, 3, 12:-1]
    assert dist < 8.0  # inside the basis's range for this seed
    assert abs(NEIGHBOUR_RBF_CENTRES[int(rbf.argmax())] - dist) <= 0.125 + 1e-9
