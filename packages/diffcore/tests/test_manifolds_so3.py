"""SO(3) utilities against closed forms and scipy's independent implementation."""

import math

import numpy as np
import pytest
import torch
from diffcore.manifolds import so3
from scipy import stats
from scipy.spatial.transform import Rotation


@pytest.fixture(autouse=True, scope="module")
def _float64_default():
    # This module checks float64 round-off; restore the global default for the other test modules.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _rotvecs(n: int, seed: int, max_angle: float = math.pi) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, generator=g, dtype=torch.float64) * max_angle
    return axis * angle[:, None]


def test_hat_is_cross_product_and_vee_inverts():
    v, x = _rotvecs(10, 0), _rotvecs(10, 1)
    torch.testing.assert_close(so3.hat(v) @ x[..., None], torch.cross(v, x, dim=-1)[..., None])
    torch.testing.assert_close(so3.vee(so3.hat(v)), v)


def test_exp_matches_scipy():
    v = _rotvecs(200, 2)
    expected = torch.from_numpy(Rotation.from_rotvec(v.numpy()).as_matrix())
    torch.testing.assert_close(so3.exp_map(v), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-6, 1e-3, 1.0, math.pi - 1e-3, math.pi - 1e-7, math.pi])
def test_log_inverts_exp_at_all_angles(scale):
    g = torch.Generator().manual_seed(3)
    axis = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=-1)
    v = axis * scale
    r = so3.exp_map(v)
    w = so3.log_map(r)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.norm(dim=-1), torch.full((50,), scale), atol=1e-7, rtol=0)
    # At angle pi the axis sign is ambiguous; the rotation is not.
    torch.testing.assert_close(so3.exp_map(w), r, atol=1e-7, rtol=0)
    if scale < math.pi - 1e-3:
        torch.testing.assert_close(w, v, atol=1e-9, rtol=0)


def test_log_gradient_finite_near_zero():
    v = torch.tensor([[1e-8, -2e-8, 3e-9]], requires_grad=True)
    so3.log_map(so3.exp_map(v)).sum().backward()
    assert torch.isfinite(v.grad).all()
    torch.testing.assert_close(v.grad, torch.ones_like(v), atol=1e-6, rtol=0)


def test_quaternion_roundtrip_and_product_is_composition():
    a = so3.random_rotations(100, torch.Generator().manual_seed(4), torch.float64)
    b = so3.random_rotations(100, torch.Generator().manual_seed(5), torch.float64)
    qa, qb = so3.matrix_to_quaternion(a), so3.matrix_to_quaternion(b)
    assert (qa[:, 0] >= 0).all()
    torch.testing.assert_close(so3.quaternion_to_matrix(qa), a)
    torch.testing.assert_close(so3.quaternion_to_matrix(so3.quaternion_multiply(qa, qb)), a @ b)
    # scipy uses (x, y, z, w).
    expected = Rotation.from_matrix(a.numpy()).as_quat()
    expected = expected * np.sign(expected[:, 3:])
    torch.testing.assert_close(qa, torch.from_numpy(expected[:, [3, 0, 1, 2]]))


def test_random_rotations_are_haar_uniform():
    r = so3.random_rotations(20000, torch.Generator().manual_seed(6), torch.float64)
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3).expand(20000, 3, 3))
    assert torch.allclose(torch.det(r), torch.ones(20000))
    angle = so3.rotation_angle(r).numpy()
    # Haar angle CDF: (w - sin w) / pi.
    assert stats.kstest(angle, lambda w: (w - np.sin(w)) / np.pi).pvalue > 1e-3
    # The image of a fixed vector is uniform on the sphere: mean ~ 0.
    assert r[:, :, 0].mean(0).abs().max() < 0.03


def test_geodesic_distance_and_interpolation():
    a = so3.random_rotations(50, torch.Generator().manual_seed(7), torch.float64)
    v = _rotvecs(50, 8, max_angle=3.0)
    b = a @ so3.exp_map(v)
    torch.testing.assert_close(so3.geodesic_distance(a, b), v.norm(dim=-1))
    # Left-invariance of the metric.
    c = so3.random_rotations(1, torch.Generator().manual_seed(9), torch.float64)
    torch.testing.assert_close(so3.geodesic_distance(c @ a, c @ b), v.norm(dim=-1))
    s = torch.rand(50, generator=torch.Generator().manual_seed(10))
    mid = so3.geodesic_interpolate(a, b, s)
    torch.testing.assert_close(so3.geodesic_distance(a, mid), s * v.norm(dim=-1))
    torch.testing.assert_close(so3.geodesic_distance(mid, b), (1 - s) * v.norm(dim=-1))
    torch.testing.assert_close(so3.geodesic_interpolate(a, b, 0.0), a)
    torch.testing.assert_close(so3.geodesic_interpolate(a, b, 1.0), b)


def test_tangent_projection_is_riemannian_gradient():
    # f(R) = <A, R>_F; the derivative along R exp(s hat(w)) at s=0 is <proj, w> (metric: <u, w>).
    r = so3.random_rotations(5, torch.Generator().manual_seed(11), torch.float64)
    a = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(12))
    w = torch.randn(5, 3, generator=torch.Generator().manual_seed(13))
    g = so3.project_to_tangent(r, a)
    h = 1e-6
    f = lambda m: (a * m).sum((-1, -2))  # noqa: E731
    fd = (f(r @ so3.exp_map(h * w)) - f(r @ so3.exp_map(-h * w))) / (2 * h)
    # <hat(g), hat(w)>_F = 2 <g, w>, and d/ds <A, R hat(w)> = <R^T A, hat(w)>_F = 2 <vee(skew(R^T A)), w>.
    torch.testing.assert_close(fd, 2 * (g * w).sum(-1), atol=1e-6, rtol=0)


def test_project_to_rotation():
    r = so3.random_rotations(10, torch.Generator().manual_seed(14), torch.float64)
    noisy = r + 1e-3 * torch.randn(10, 3, 3, generator=torch.Generator().manual_seed(15))
    p = so3.project_to_rotation(noisy)
    assert torch.allclose(torch.det(p), torch.ones(10))
    assert (so3.geodesic_distance(p, r) < 5e-3).all()
    torch.testing.assert_close(so3.project_to_rotation(r), r)


def test_bad_shape_names_parameter():
    with pytest.raises(ValueError, match="v: expected shape"):
        so3.exp_map(torch.zeros(4, 2))


def test_geodesic_velocity_is_time_derivative_of_interpolation():
    a = so3.random_rotations(20, torch.Generator().manual_seed(16), torch.float64)
    b = a @ so3.exp_map(_rotvecs(20, 17, max_angle=2.5))
    t = torch.rand(20, generator=torch.Generator().manual_seed(18)) * 0.8 + 0.1
    r_t = so3.geodesic_interpolate(a, b, t)
    v = so3.geodesic_velocity(r_t, a, t)
    h = 1e-6
    fd = so3.log_map(r_t.transpose(-1, -2) @ so3.geodesic_interpolate(a, b, t + h)) / h
    torch.testing.assert_close(v, fd, atol=1e-5, rtol=0)
    torch.testing.assert_close(v, so3.log_map(a.transpose(-1, -2) @ b))  # constant along the path
    with pytest.raises(ValueError, match="t: expected"):
        so3.geodesic_velocity(r_t, a, 0.0)
