"""A set of 3D Gaussians in the parameterisation of 3D Gaussian Splatting (Kerbl et al. 2023).

Conventions (the same as the original 3DGS code, its PLY files and gsplat):

- ``means``: (N, 3) world positions.
- ``quats``: (N, 4) rotations as quaternions in **wxyz** order (real part first), stored unnormalised;
  every use normalises them. The rotation maps the Gaussian's local axes to world axes.
- ``log_scales``: (N, 3) natural log of the standard deviations along the local axes.
- ``opacity_logits``: (N,) opacity before the sigmoid.
- ``sh``: (N, K, 3) spherical-harmonic colour coefficients, K = (degree + 1)^2, degree 0..3; ``sh[:, 0]`` is the
  DC term and the colour seen from any direction at degree 0 is ``0.5 + C0 * sh[:, 0]`` (``C0`` below).

Covariance (3DGS, Eq. 6): ``Sigma = R S S^T R^T`` with ``R`` from the quaternion and ``S = diag(exp(log_scales))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

__all__ = [
    "C0",
    "Gaussians",
    "quat_from_two_vectors",
    "quat_to_rotation",
    "rgb_to_sh_dc",
    "sh_basis",
    "sh_dc_to_rgb",
    "sh_num_coeffs",
    "vector_dim",
]

# Real spherical-harmonic constants of the basis 3DGS uses (degrees 0..3).
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def sh_num_coeffs(degree: int) -> int:
    """K = (degree + 1)^2 coefficients per colour channel for SH ``degree`` in 0..3."""
    if isinstance(degree, bool) or not isinstance(degree, int) or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree: expected an integer in 0..{MAX_SH_DEGREE}, got {degree!r}")
    return (degree + 1) ** 2


def vector_dim(sh_degree: int) -> int:
    """Columns of :meth:`Gaussians.to_vector`: 3 + 4 + 3 + 1 + 3 K."""
    return 11 + 3 * sh_num_coeffs(sh_degree)


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """The DC coefficient that shows colour ``rgb`` (any shape, last dim 3): ``(rgb - 0.5) / C0``."""
    return (rgb - 0.5) / C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """The colour of a DC coefficient: ``0.5 + C0 * dc`` (unclamped)."""
    return 0.5 + C0 * dc


def quat_to_rotation(quats: torch.Tensor) -> torch.Tensor:
    """(..., 4) wxyz quaternions (normalised here) -> (..., 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def quat_from_two_vectors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 4) wxyz unit quaternions of the shortest rotation taking unit vectors ``a`` onto ``b`` (..., 3).

    ``q = normalise(1 + a.b, a x b)``; when ``b = -a`` any half turn about an axis orthogonal to ``a`` is used.
    """
    a, b = torch.broadcast_tensors(a, b)
    w = 1.0 + (a * b).sum(-1, keepdim=True)
    q = torch.cat([w, torch.linalg.cross(a, b, dim=-1)], dim=-1)
    opposite = w.squeeze(-1) < 1e-6
    if bool(opposite.any()):
        # any axis orthogonal to a: cross with x, or with y if a is along x
        ex = torch.zeros_like(a)
        ex[..., 0] = 1.0
        ey = torch.zeros_like(a)
        ey[..., 1] = 1.0
        along_x = a[..., 0].abs() > 0.9
        axis = torch.linalg.cross(a, torch.where(along_x[..., None], ey, ex), dim=-1)
        half_turn = torch.cat([torch.zeros_like(w), axis], dim=-1)
        q = torch.where(opposite[..., None], half_turn, q)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """The real SH basis of 3DGS at unit directions ``dirs`` (..., 3) -> (..., K), K = (degree + 1)^2.

    Constants and signs as in the 3DGS CUDA rasteriser (``computeColorFromSH``), so coefficients read from
    3DGS PLY files give the same colours.
    """
    k = sh_num_coeffs(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            C2[0] * x * y,
            C2[1] * y * z,
            C2[2] * (2 * zz - xx - yy),
            C2[3] * x * z,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    basis = torch.stack(out, dim=-1)
    assert basis.shape[-1] == k
    return basis


def _check(name: str, t: object, shape: tuple[int | None, ...]) -> torch.Tensor:
    """Refuse a non-tensor or a tensor whose shape does not match ``shape`` (None = any size)."""
    dims = ["N" if s is None else str(s) for s in shape]
    want = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {want}, got {type(t).__name__}")
    if t.ndim != len(shape) or any(s is not None and d != s for d, s in zip(t.shape, shape)):
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    return t


@dataclass
class Gaussians:
    """N anisotropic 3D Gaussians with view-dependent colour (the module docstring gives the conventions).

    Attributes:
        means: (N, 3) centres, world coordinates.
        quats: (N, 4) rotations, wxyz, unnormalised (normalised when used).
        log_scales: (N, 3) log standard deviations along the local axes.
        opacity_logits: (N,) logits of the opacity.
        sh: (N, K, 3) SH coefficients, K = (degree + 1)^2, degree 0..3; ``sh[:, 0]`` is the DC term.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor

    def __post_init__(self) -> None:
        _check("means", self.means, (None, 3))
        n = self.means.shape[0]
        _check("quats", self.quats, (n, 4))
        _check("log_scales", self.log_scales, (n, 3))
        _check("opacity_logits", self.opacity_logits, (n,))
        _check("sh", self.sh, (n, None, 3))
        k = self.sh.shape[1]
        if k not in (1, 4, 9, 16):
            raise ValueError(f"sh: expected K = (degree + 1)^2 in (1, 4, 9, 16) coefficients, got K = {k}")

    # -- sizes ---------------------------------------------------------------------------------------------------
    @property
    def num(self) -> int:
        """N, the number of Gaussians."""
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """The SH degree, 0..3, from K = (degree + 1)^2."""
        return math.isqrt(self.sh.shape[1]) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def __len__(self) -> int:
        return self.num

    # -- activated parameters ------------------------------------------------------------------------------------
    def scales(self) -> torch.Tensor:
        """(N, 3) standard deviations ``exp(log_scales)``."""
        return self.log_scales.exp()

    def opacities(self) -> torch.Tensor:
        """(N,) opacities in (0, 1): ``sigmoid(opacity_logits)``."""
        return torch.sigmoid(self.opacity_logits)

    def unit_quats(self) -> torch.Tensor:
        """(N, 4) normalised wxyz quaternions."""
        return self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def rotations(self) -> torch.Tensor:
        """(N, 3, 3) rotation matrices (local axes to world)."""
        return quat_to_rotation(self.quats)

    def covariances(self) -> torch.Tensor:
        """(N, 3, 3) world covariances ``R S S^T R^T`` (3DGS Eq. 6)."""
        m = self.rotations() * self.scales()[:, None, :]  # R S
        return m @ m.transpose(-1, -2)

    def colors(self, view_dirs: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3) RGB seen along ``view_dirs`` (N, 3) or (3,), the direction from the camera to each Gaussian.

        ``view_dirs`` is normalised here; None (or degree 0) uses the DC term only. As in 3DGS the result is
        ``max(0.5 + sum_k basis_k(d) sh_k, 0)``: clamped below at 0, not above.
        """
        if view_dirs is None or self.sh_degree == 0:
            return (sh_dc_to_rgb(self.sh[:, 0])).clamp_min(0.0)
        if view_dirs.shape[-1] != 3 or view_dirs.ndim not in (1, 2):
            raise ValueError(f"view_dirs: expected shape (N, 3) or (3,), got {tuple(view_dirs.shape)}")
        d = view_dirs / view_dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        basis = sh_basis(d.expand(self.num, 3), self.sh_degree)  # (N, K)
        return (0.5 + (basis[:, :, None] * self.sh).sum(1)).clamp_min(0.0)

    # -- tensor plumbing -----------------------------------------------------------------------------------------
    def _map(self, fn) -> Gaussians:
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> Gaussians:
        """A copy with every tensor moved / cast as ``torch.Tensor.to(*args, **kwargs)``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Gaussians:
        """A copy without autograd history (tensors share storage)."""
        return self._map(lambda t: t.detach())

    def clone(self) -> Gaussians:
        """A copy with its own storage."""
        return self._map(lambda t: t.clone())

    def requires_grad_(self, flag: bool = True) -> Gaussians:
        """Set ``requires_grad`` on every tensor in place; returns self."""
        for f in fields(self):
            getattr(self, f.name).requires_grad_(flag)
        return self

    def parameters(self) -> dict[str, torch.Tensor]:
        """The five tensors by name (the field names), in the order of the dataclass."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def subset(self, idx: torch.Tensor | slice) -> Gaussians:
        """The Gaussians selected by ``idx`` (an index tensor, a boolean mask of shape (N,) or a slice)."""
        if isinstance(idx, torch.Tensor) and idx.dtype == torch.bool and idx.shape != (self.num,):
            raise ValueError(f"idx: expected a boolean mask of shape ({self.num},), got {tuple(idx.shape)}")
        return self._map(lambda t: t[idx])

    @staticmethod
    def concat(parts: list[Gaussians]) -> Gaussians:
        """One set holding every Gaussian of ``parts`` in order; all must share the SH degree."""
        if not parts:
            raise ValueError("parts: expected at least one Gaussians, got an empty list")
        degrees = {p.sh_degree for p in parts}
        if len(degrees) != 1:
            raise ValueError(f"parts: expected one SH degree, got degrees {sorted(degrees)}")
        return Gaussians(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Gaussians)}
        )

    def with_sh_degree(self, degree: int) -> Gaussians:
        """A copy at SH ``degree``: higher coefficients dropped, or zeros added."""
        k = sh_num_coeffs(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(self.num, k - sh.shape[1], 3)], dim=1)
        return Gaussians(self.means, self.quats, self.log_scales, self.opacity_logits, sh)

    # -- the flat layout of generative models --------------------------------------------------------------------
    def to_vector(self) -> torch.Tensor:
        """(N, D) rows, one per Gaussian, D = 11 + 3K (:func:`vector_dim`), columns in this order:

        ``[0:3]`` means xyz, ``[3:7]`` quats wxyz (as stored), ``[7:10]`` log_scales, ``[10]`` opacity logit,
        ``[11:11+3K]`` SH coefficients coefficient-major (``sh[:, 0, rgb], sh[:, 1, rgb], ...``), so the
        DC colour is columns 11..13 at every degree.
        """
        return torch.cat(
            [
                self.means,
                self.quats,
                self.log_scales,
                self.opacity_logits[:, None],
                self.sh.reshape(self.num, -1),
            ],
            dim=1,
        )

    @classmethod
    def from_vector(cls, x: torch.Tensor, sh_degree: int = 0) -> Gaussians:
        """The inverse of :meth:`to_vector`: ``x`` (N, 11 + 3K) with K = (sh_degree + 1)^2."""
        d = vector_dim(sh_degree)
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != d:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (N, {d}) for sh_degree={sh_degree}, got {got}")
        return cls(
            means=x[:, 0:3],
            quats=x[:, 3:7],
            log_scales=x[:, 7:10],
            opacity_logits=x[:, 10],
            sh=x[:, 11:].reshape(x.shape[0], -1, 3),
        )

    # -- construction ----------------------------------------------------------------------------------------------
    @classmethod
    def from_activated(
        cls,
        means: torch.Tensor,
        scales: torch.Tensor,
        opacities: torch.Tensor,
        rgb: torch.Tensor,
        quats: torch.Tensor | None = None,
        sh_degree: int = 0,
    ) -> Gaussians:
        """Gaussians from activated values: ``scales`` (N, 3) > 0, ``opacities`` (N,) in (0, 1), ``rgb`` (N, 3)
        base colours (the DC term; higher SH coefficients zero), ``quats`` (N, 4) wxyz (default identity)."""
        n = _check("means", means, (None, 3)).shape[0]
        _check("scales", scales, (n, 3))
        _check("opacities", opacities, (n,))
        _check("rgb", rgb, (n, 3))
        if bool((scales <= 0).any()):
            raise ValueError("scales: expected every standard deviation > 0")
        if quats is None:
            quats = torch.zeros(n, 4, dtype=means.dtype, device=means.device)
            quats[:, 0] = 1.0
        sh = torch.zeros(n, sh_num_coeffs(sh_degree), 3, dtype=means.dtype, device=means.device)
        sh[:, 0] = rgb_to_sh_dc(rgb)
        eps = torch.finfo(opacities.dtype).eps
        logits = torch.logit(opacities.clamp(eps, 1 - eps))
        return cls(means, quats, scales.log(), logits, sh)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors by ``prefix + field name`` (for safetensors); :meth:`from_state_dict` reads them back."""
        return {prefix + k: v.detach().contiguous() for k, v in self.parameters().items()}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> Gaussians:
        """Gaussians from the output of :meth:`state_dict` (a missing key is a ValueError naming it)."""
        missing = [f.name for f in fields(cls) if prefix + f.name not in tensors]
        if missing:
            raise ValueError(f"tensors: missing {', '.join(prefix + m for m in missing)}")
        return cls(**{f.name: tensors[prefix + f.name] for f in fields(cls)})
