"""Rotations: the Lie group SO(3), its Lie algebra so(3) and unit quaternions.

Conventions used throughout:

* A rotation is a matrix ``R: (..., 3, 3)`` acting on column vectors, ``x' = R @ x``.
* A tangent vector (element of so(3)) is a *rotation vector* ``v: (..., 3)``; its angle is ``|v|`` in
  [0, pi] after :func:`log_map` and its axis ``v / |v|``. ``hat(v)`` is the skew matrix with
  ``hat(v) @ x = v x x`` (cross product).
* Tangent vectors at ``R`` are right-trivialised ("body frame"): the curve through ``R`` with velocity
  ``v`` is ``R @ exp(s * hat(v))``. This is the frame FrameDiff (Yim et al. 2023) and FrameFlow use.
* Quaternions are ``(w, x, y, z)`` with the scalar first, unit norm, and ``w >= 0`` after conversion.

All functions are batched over leading dimensions and differentiable. The exponential and logarithm
are stable at angle 0 (Taylor series) and at angle pi (the logarithm goes through quaternions,
whose ``atan2`` form has no singularity there).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "exp_map",
    "geodesic_distance",
    "geodesic_interpolate",
    "geodesic_velocity",
    "hat",
    "log_map",
    "matrix_to_quaternion",
    "project_to_rotation",
    "project_to_tangent",
    "quaternion_multiply",
    "quaternion_to_matrix",
    "random_rotations",
    "rotation_angle",
    "skew_part",
    "uniform_angle_density",
    "vee",
]

# Below this angle (radians) the Taylor series of sin(x)/x and (1-cos x)/x^2 replace the closed forms;
# the series error (x^4 terms) is then far below float64 round-off.
_SMALL_ANGLE = 1e-4


def _check_last(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape[-len(shape) :]) != shape:
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, shape))}), got {tuple(x.shape)}")


def hat(v: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix of a vector: ``hat(v) @ x == cross(v, x)``. ``v: (..., 3) -> (..., 3, 3)``."""
    _check_last(v, (3,), "v")
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    rows = [torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1), torch.stack([-y, x, o], -1)]
    return torch.stack(rows, -2)


def vee(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat` on the skew-symmetric part of ``m``. ``m: (..., 3, 3) -> (..., 3)``."""
    _check_last(m, (3, 3), "m")
    a = skew_part(m)
    return torch.stack([a[..., 2, 1], a[..., 0, 2], a[..., 1, 0]], -1)


def skew_part(m: torch.Tensor) -> torch.Tensor:
    """``(m - m^T) / 2``, the projection of a 3x3 matrix onto so(3). ``m: (..., 3, 3)``."""
    return 0.5 * (m - m.transpose(-1, -2))


def _sinc_and_cosc(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sin(x)/x`` and ``(1 - cos x)/x^2``, with their Taylor series near 0."""
    small = theta < _SMALL_ANGLE
    t = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / (t * t))
    return a, b


def exp_map(v: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a rotation vector (Rodrigues' formula). ``v: (..., 3) -> (..., 3, 3)``.

    ``exp(hat(v)) = I + sin(|v|)/|v| hat(v) + (1 - cos|v|)/|v|^2 hat(v)^2``.
    """
    _check_last(v, (3,), "v")
    theta = torch.linalg.vector_norm(v, dim=-1)
    a, b = _sinc_and_cosc(theta)
    k = hat(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix of a quaternion ``(w, x, y, z)`` (normalised first). ``q: (..., 4) -> (..., 3, 3)``."""
    _check_last(q, (4,), "q")
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix. ``r: (..., 3, 3) -> (..., 4)``.

    Shepperd's method: four algebraically equal expressions, each dividing by a different
    ``4 |q_i|``; the one with the largest ``|q_i|`` is used, so no division is ever ill-conditioned.
    """
    _check_last(r, (3, 3), "r")
    m = r
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 q_i^2 for i = w, x, y, z (clamped: round-off can make them slightly negative).
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    ).clamp_min(0.0)
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    # Row i holds 4 q_i * (w, x, y, z).
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], d21, d02, d10], -1),
            torch.stack([d21, sq[..., 1], s10, s02], -1),
            torch.stack([d02, s10, sq[..., 2], s21], -1),
            torch.stack([d10, s02, s21, sq[..., 3]], -1),
        ],
        -2,
    )
    best = sq.argmax(-1)
    denom = 2.0 * torch.sqrt(sq.gather(-1, best[..., None]).clamp_min(1e-30))  # = 4 |q_best|
    q = cand.gather(-2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2) / denom
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def quaternion_multiply(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``p * q``: rotate by ``q``, then ``p``. ``(..., 4), (..., 4) -> (..., 4)``."""
    _check_last(p, (4,), "p")
    _check_last(q, (4,), "q")
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack(
        [
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ],
        -1,
    )


def _quaternion_to_rotvec(q: torch.Tensor) -> torch.Tensor:
    """Rotation vector of a unit quaternion with ``w >= 0``; angle ``2 atan2(|xyz|, w)`` in [0, pi]."""
    xyz = q[..., 1:]
    s = torch.linalg.vector_norm(xyz, dim=-1)
    w = q[..., 0]
    theta = 2.0 * torch.atan2(s, w)
    small = s < _SMALL_ANGLE
    s_safe = torch.where(small, torch.ones_like(s), s)
    # theta / s -> 2 / w (1 - s^2 / (3 w^2)) as s -> 0 (w -> 1 there, so no division by ~0).
    w_safe = torch.where(small, w, torch.ones_like(w))
    scale = torch.where(small, 2.0 / w_safe * (1.0 - s * s / (3.0 * w_safe * w_safe)), theta / s_safe)
    return xyz * scale[..., None]


def log_map(r: torch.Tensor) -> torch.Tensor:
    """Rotation vector of a rotation matrix, angle in [0, pi]. ``r: (..., 3, 3) -> (..., 3)``.

    At angle exactly pi the axis sign is ambiguous (both are correct); the quaternion route picks one.
    """
    return _quaternion_to_rotvec(matrix_to_quaternion(r))


def rotation_angle(r: torch.Tensor) -> torch.Tensor:
    """Angle in [0, pi] of a rotation matrix: ``atan2(|vee(R)|, (tr R - 1) / 2)``. ``(..., 3, 3) -> (...)``.

    The ``atan2`` form is accurate at both ends, unlike ``arccos((tr R - 1) / 2)``.
    """
    _check_last(r, (3, 3), "r")
    sin = torch.linalg.vector_norm(vee(r), dim=-1)
    cos = 0.5 * (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.atan2(sin, cos)


def geodesic_distance(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Riemannian distance ``|log(R1^T R2)|`` in [0, pi], bi-invariant. ``(..., 3, 3) x2 -> (...)``."""
    return rotation_angle(r1.transpose(-1, -2) @ r2)


def geodesic_interpolate(r0: torch.Tensor, r1: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """Point at fraction ``s`` of the geodesic from ``R0`` (s=0) to ``R1`` (s=1): ``R0 exp(s log(R0^T R1))``.

    This is the conditional path of Riemannian flow matching on SO(3) (FrameFlow, Yim et al. 2023,
    Eq. 7, where data sit at s=1; with data ``R0`` and noise ``R1``, ``s = t`` is our ``R_t``, t=0 data).
    ``r0, r1: (..., 3, 3)``; ``s``: a float or a tensor broadcastable to the batch shape ``(...)``.
    """
    _check_last(r0, (3, 3), "r0")
    _check_last(r1, (3, 3), "r1")
    v = log_map(r0.transpose(-1, -2) @ r1)
    s = torch.as_tensor(s, dtype=v.dtype, device=v.device)
    return r0 @ exp_map(s[..., None] * v)


def geodesic_velocity(r_t: torch.Tensor, r_0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Body-frame ``dR/dt`` at ``R_t`` of the geodesic path with ``R_0`` at ``t = 0`` (data) and noise at t = 1.

    On ``R_t = R_0 exp(t log(R_0^T R_1))`` the body velocity is constant, ``log(R_0^T R_1)``, and equals
    ``-log(R_t^T R_0) / t``: the regression target of Riemannian flow matching on SO(3) (FrameFlow,
    Yim et al. 2023, Eq. 8, written in our time direction). ``r_t, r_0: (..., 3, 3)``; ``t > 0``
    broadcastable to ``(...)``. Returns ``(..., 3)``.
    """
    _check_last(r_t, (3, 3), "r_t")
    _check_last(r_0, (3, 3), "r_0")
    t = torch.as_tensor(t, dtype=r_t.dtype, device=r_t.device)
    if (t <= 0).any():
        raise ValueError("t: expected times > 0 (the velocity is undefined at the data end t = 0)")
    return -log_map(r_t.transpose(-1, -2) @ r_0) / t[..., None]


def project_to_tangent(r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of an ambient 3x3 matrix ``A`` onto the tangent space at ``R``.

    Returns the body-frame rotation vector ``vee(skew(R^T A))``; the ambient tangent matrix is
    ``R @ hat(result)``. For ``A = dL/dR`` (a Euclidean gradient) this is the Riemannian gradient.
    ``r, a: (..., 3, 3) -> (..., 3)``.
    """
    _check_last(r, (3, 3), "r")
    _check_last(a, (3, 3), "a")
    return vee(r.transpose(-1, -2) @ a)


def project_to_rotation(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius norm) to a 3x3 matrix, via SVD with the determinant fixed to +1."""
    _check_last(m, (3, 3), "m")
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    ones = torch.ones_like(d)
    fix = torch.diag_embed(torch.stack([ones, ones, d], -1))
    return u @ fix @ vh


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` rotations uniform under the Haar measure: ``(n, 3, 3)``.

    A standard normal 4-vector, normalised, is uniform on S^3, and the double cover S^3 -> SO(3)
    pushes it to the Haar measure (Shoemake 1992).
    """
    if n < 0:
        raise ValueError(f"n: expected a non-negative count, got {n}")
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=device)
    return quaternion_to_matrix(q).to(dtype)


def uniform_angle_density(omega: torch.Tensor) -> torch.Tensor:
    """Density of the rotation angle of a Haar-uniform rotation on [0, pi]: ``(1 - cos w) / pi``."""
    return (1.0 - torch.cos(omega)) / math.pi
