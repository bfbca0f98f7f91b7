"""Gaussians: the flat layout round-trips, covariances and rotations are what the formulas say, the SH basis
is orthonormal and bad shapes are refused naming the parameter."""

import math

import pytest
import torch
from diff_3d.gaussians import (
    C0,
    Gaussians,
    quat_from_two_vectors,
    quat_to_rotation,
    sh_basis,
    sh_num_coeffs,
    vector_dim,
)


def random_gaussians(n: int = 5, degree: int = 0, seed: int = 0, dtype=torch.float64) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k = sh_num_coeffs(degree)
    return Gaussians(
        means=torch.randn(n, 3, generator=g, dtype=dtype),
        quats=torch.randn(n, 4, generator=g, dtype=dtype),
        log_scales=torch.randn(n, 3, generator=g, dtype=dtype) * 0.3 - 2,
        opacity_logits=torch.randn(n, generator=g, dtype=dtype),
        sh=torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.3,
    )


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_to_vector_and_back_is_exact_at_every_degree(degree):
    gs = random_gaussians(7, degree)
    x = gs.to_vector()
    assert x.shape == (7, vector_dim(degree)) == (7, 11 + 3 * (degree + 1) ** 2)
    back = Gaussians.from_vector(x, degree)
    for name, t in gs.parameters().items():
        assert torch.equal(getattr(back, name), t), name
    assert back.sh_degree == degree
    # the DC colour is always columns 11..13
    assert torch.equal(x[:, 11:14], gs.sh[:, 0])


def test_from_vector_refuses_the_wrong_width_naming_x():
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 14\) for sh_degree=0"):
        Gaussians.from_vector(torch.zeros(3, 20), 0)


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("means", torch.zeros(4, 2), r"means: expected shape \(N, 3\)"),
        ("quats", torch.zeros(4, 3), r"quats: expected shape \(4, 4\)"),
        ("log_scales", torch.zeros(3, 3), r"log_scales: expected shape \(4, 3\)"),
        ("opacity_logits", torch.zeros(4, 1), r"opacity_logits: expected shape \(4,\)"),
        ("sh", torch.zeros(4, 5, 3), r"sh: expected K = \(degree \+ 1\)\^2"),
    ],
)
def test_bad_shapes_are_refused_naming_the_parameter(field, bad, message):
    params = random_gaussians(4, 0, dtype=torch.float32).parameters()
    params[field] = bad
    with pytest.raises(ValueError, match=message):
        Gaussians(**params)


def test_rotation_of_a_quarter_turn_about_z_maps_x_to_y():
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], dtype=torch.float64)
    r = quat_to_rotation(q * 3.0)  # unnormalised on purpose
    torch.testing.assert_close(
        r @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 1.0, 0], dtype=torch.float64)
    )


def test_rotations_are_orthonormal_with_determinant_one():
    r = random_gaussians(50).rotations()
    eye = torch.eye(3, dtype=r.dtype).expand(50, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(50, dtype=r.dtype))


def test_covariance_is_r_s_squared_r_transpose():
    gs = random_gaussians(20)
    cov = gs.covariances()
    r, s = gs.rotations(), gs.scales()
    torch.testing.assert_close(cov, r @ torch.diag_embed(s**2) @ r.transpose(1, 2))
    # eigenvalues are the squared scales
    torch.testing.assert_close(torch.linalg.eigvalsh(cov), (s**2).sort(dim=1).values)


def test_identity_quaternion_gives_a_diagonal_covariance():
    gs = Gaussians.from_activated(
        torch.zeros(1, 3),
        torch.tensor([[1.0, 2.0, 3.0]]),
        torch.tensor([0.5]),
        torch.tensor([[0.2, 0.4, 0.6]]),
    )
    torch.testing.assert_close(gs.covariances()[0], torch.diag(torch.tensor([1.0, 4.0, 9.0])))
    torch.testing.assert_close(gs.colors(), torch.tensor([[0.2, 0.4, 0.6]]))
    torch.testing.assert_close(gs.opacities(), torch.tensor([0.5]))


def test_sh_basis_is_orthonormal_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    y = sh_basis(d, 3)  # (M, 16)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_degree_zero_colour_is_half_plus_c0_times_dc_in_every_direction():
    gs = random_gaussians(6, degree=0)
    want = (0.5 + C0 * gs.sh[:, 0]).clamp_min(0)
    torch.testing.assert_close(gs.colors(torch.randn(6, 3, dtype=torch.float64)), want)


def test_first_degree_colour_follows_the_3dgs_signs():
    gs = random_gaussians(1, degree=1)
    gs.sh.zero_()
    gs.sh[0, 3] = 1.0  # the coefficient of -C1 * x
    c = gs.colors(torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(c, torch.full((1, 3), 0.5 + 0.4886025119029199, dtype=torch.float64))


def test_colours_are_clamped_below_at_zero_only():
    gs = random_gaussians(2)
    gs.sh[:, 0] = torch.tensor([[-10.0, 0.0, 10.0], [-10.0, 0.0, 10.0]])
    c = gs.colors()
    assert c[:, 0].eq(0).all() and c[:, 2].gt(1).all()


def test_subset_concat_and_sh_degree_change():
    gs = random_gaussians(6, degree=1)
    parts = [gs.subset(slice(0, 2)), gs.subset(torch.tensor([2, 3])), gs.subset(torch.arange(6) >= 4)]
    back = Gaussians.concat(parts)
    assert torch.equal(back.to_vector(), gs.to_vector())
    up = gs.with_sh_degree(3)
    assert up.sh_degree == 3 and torch.equal(up.sh[:, :4], gs.sh) and up.sh[:, 4:].eq(0).all()
    with pytest.raises(ValueError, match="parts: expected one SH degree"):
        Gaussians.concat([gs, up])


def test_quat_from_two_vectors_rotates_a_onto_b_including_opposite_vectors():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=torch.float64), dim=1)
    b[:3] = -a[:3]
    a[3] = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    b[3] = -a[3]
    r = quat_to_rotation(quat_from_two_vectors(a, b))
    torch.testing.assert_close((r @ a[:, :, None])[:, :, 0], b)


def test_state_dict_round_trip_and_to_dtype():
    gs = random_gaussians(3, degree=2)
    back = Gaussians.from_state_dict(gs.state_dict("obj0."), "obj0.")
    assert torch.equal(back.sh, gs.sh)
    assert gs.to(torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match=r"tensors: missing obj0\.sh"):
        Gaussians.from_state_dict(
            {k: v for k, v in gs.state_dict("obj0.").items() if k != "obj0.sh"}, "obj0."
        )
