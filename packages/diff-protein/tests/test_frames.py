"""Residue frames and ideal backbone geometry: exact round trips, equivariance, NeRF against its definition."""

import math

import pytest
import torch
from diff_protein import frames as fr
from diff_protein import geometry as geo
from diffcore.manifolds import so3


def _random_chain(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    phi = (torch.rand(batch, length, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    psi = (torch.rand(batch, length, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    omega = math.pi + 0.1 * torch.randn(batch, length, generator=g, dtype=torch.float64)
    return phi, psi, omega


def _random_rigid(seed: int) -> fr.Rigid:
    g = torch.Generator().manual_seed(seed)
    return fr.Rigid(
        so3.random_rotations(1, g, torch.float64)[0], 10 * torch.randn(3, generator=g, dtype=torch.float64)
    )


def test_place_atom_realises_its_internal_coordinates():
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(3, 100, 3, generator=g, dtype=torch.float64)
    torsion = (torch.rand(100, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    angle = torch.rand(100, generator=g, dtype=torch.float64) * 2 + 0.5
    d = geo.place_atom(a, b, c, 1.5, angle, torsion)
    torch.testing.assert_close((d - c).norm(dim=-1), torch.full((100,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(geo.bond_angle(b, c, d), angle)
    torch.testing.assert_close(geo.dihedral(a, b, c, d), torsion)


def test_chain_has_ideal_geometry_and_requested_dihedrals():
    phi, psi, omega = _random_chain(4, 30, 1)
    atoms = geo.backbone_from_dihedrals(phi, psi, omega)
    assert atoms.shape == (4, 30, 4, 3)
    n, ca, c, o = atoms.unbind(-2)
    torch.testing.assert_close((ca - n).norm(dim=-1), torch.full((4, 30), geo.BOND_N_CA, dtype=torch.float64))
    torch.testing.assert_close(
        (c[:, :-1] - n[:, 1:]).norm(dim=-1), torch.full((4, 29), geo.BOND_C_N, dtype=torch.float64)
    )
    torch.testing.assert_close(
        geo.bond_angle(n, ca, c), torch.full((4, 30), geo.ANGLE_N_CA_C, dtype=torch.float64)
    )
    torch.testing.assert_close((o - c).norm(dim=-1), torch.full((4, 30), geo.BOND_C_O, dtype=torch.float64))
    got_phi, got_psi, got_omega = geo.backbone_dihedrals(atoms)
    wrap = lambda x: torch.remainder(x + math.pi, 2 * math.pi) - math.pi  # noqa: E731
    torch.testing.assert_close(
        wrap(got_phi[:, 1:] - phi[:, 1:]), torch.zeros(4, 29, dtype=torch.float64), atol=1e-8, rtol=0
    )
    torch.testing.assert_close(
        wrap(got_psi[:, :-1] - psi[:, :-1]), torch.zeros(4, 29, dtype=torch.float64), atol=1e-8, rtol=0
    )
    torch.testing.assert_close(
        wrap(got_omega[:, :-1] - omega[:, :-1]), torch.zeros(4, 29, dtype=torch.float64), atol=1e-8, rtol=0
    )
    assert torch.isnan(got_phi[:, 0]).all() and torch.isnan(got_psi[:, -1]).all()


def test_alpha_helix_has_textbook_rise_and_ca_spacing():
    length = 20
    atoms = geo.backbone_from_dihedrals(
        torch.full((length,), math.radians(-57.8), dtype=torch.float64),
        torch.full((length,), math.radians(-47.0), dtype=torch.float64),
    )
    ca = atoms[:, 1]
    torch.testing.assert_close(
        (ca[1:] - ca[:-1]).norm(dim=-1),
        torch.full((length - 1,), 3.80, dtype=torch.float64),
        atol=0.02,
        rtol=0,
    )
    # i -> i+4 CA distance of an alpha helix is ~6.2 A (3.6 residues per turn, 1.5 A rise).
    assert ((ca[4:] - ca[:-4]).norm(dim=-1) - 6.2).abs().max() < 0.2


def test_frames_to_atoms_round_trip_is_exact_on_ideal_geometry():
    phi, psi, omega = _random_chain(3, 25, 2)
    atoms = geo.backbone_from_dihedrals(phi, psi, omega)
    frames = fr.frames_from_backbone(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :])
    torch.testing.assert_close(
        frames.rots @ frames.rots.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(3, 25, 3, 3)
    )
    torch.testing.assert_close(torch.det(frames.rots), torch.ones(3, 25, dtype=torch.float64))
    # O from the next residue's N: exact except the last residue (no next N, psi guessed).
    rebuilt = fr.backbone_from_frames(frames)
    torch.testing.assert_close(rebuilt[..., :3, :], atoms[..., :3, :], atol=1e-9, rtol=0)
    torch.testing.assert_close(rebuilt[:, :-1, 3], atoms[:, :-1, 3], atol=1e-9, rtol=0)
    # O from psi: exact everywhere.
    torch.testing.assert_close(fr.backbone_from_frames(frames, psi=psi), atoms, atol=1e-9, rtol=0)
    # Frames from the rebuilt atoms are the same frames.
    again = fr.frames_from_backbone(rebuilt[..., 0, :], rebuilt[..., 1, :], rebuilt[..., 2, :])
    torch.testing.assert_close(again.rots, frames.rots)
    torch.testing.assert_close(again.trans, frames.trans)


def test_frame_construction_is_rigid_equivariant():
    phi, psi, omega = _random_chain(2, 15, 3)
    atoms = geo.backbone_from_dihedrals(phi, psi, omega)
    atoms = atoms + 0.05 * torch.randn(
        atoms.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    t = _random_rigid(5)
    moved = t.apply(atoms.reshape(-1, 3)).reshape(atoms.shape)
    f = fr.frames_from_backbone(*atoms[..., :3, :].unbind(-2))
    g = fr.frames_from_backbone(*moved[..., :3, :].unbind(-2))
    tf = fr.Rigid(t.rots.expand(2, 15, 3, 3), t.trans.expand(2, 15, 3)).compose(f)
    torch.testing.assert_close(g.rots, tf.rots)
    torch.testing.assert_close(g.trans, tf.trans)
    # Local coordinates of the atoms are invariant.
    torch.testing.assert_close(f.invert_apply(atoms), g.invert_apply(moved))


def test_rigid_algebra():
    a, b, c = _random_rigid(6), _random_rigid(7), _random_rigid(8)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(a.compose(b).apply(x), a.apply(b.apply(x)))
    torch.testing.assert_close(a.apply(x), x @ a.rots.T + a.trans)
    ab_c = a.compose(b).compose(c)
    a_bc = a.compose(b.compose(c))
    torch.testing.assert_close(ab_c.rots, a_bc.rots)
    torch.testing.assert_close(ab_c.trans, a_bc.trans)
    ident = a.compose(a.invert())
    torch.testing.assert_close(ident.rots, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(ident.trans, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    batched = fr.Rigid(a.rots.expand(10, 3, 3), a.trans.expand(10, 3))
    torch.testing.assert_close(batched.invert_apply(batched.apply(x)), x)


def test_bad_shapes_raise_named_errors():
    with pytest.raises(ValueError, match="rots, trans"):
        fr.Rigid(torch.eye(3), torch.zeros(2, 3))
    frames = fr.Rigid.identity((5,), torch.float64)
    with pytest.raises(ValueError, match="psi"):
        fr.backbone_from_frames(frames, psi=torch.zeros(4, dtype=torch.float64))
