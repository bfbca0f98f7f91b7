"""Analytic 3D primitives: signed distance functions, area-uniform surface samples, captions, Gaussians.

Six kinds, each centred at the origin with the y axis up (the axis of revolution of the torus, cone,
cylinder and capsule); at ``size = "large"`` (scale 1) each fits in a ball of radius about 0.6:

========  ==============================================================  ==============================
kind      shape at scale 1                                                 surface sampling
========  ==============================================================  ==============================
sphere    radius 0.5                                                       exact (area-uniform)
cube      rounded cube, half side 0.4, edge radius 0.05                    exact (faces, edges, corners)
torus     ring in the xz plane, major radius 0.4, tube radius 0.15         exact (rejection on the tube)
cone      base radius 0.45 at y = -0.45, apex at y = +0.45                 exact (lateral surface + base)
cylinder  radius 0.4, half height 0.45                                     exact (side + two caps)
capsule   radius 0.3, segment y in [-0.3, 0.3]                             exact (side + two hemispheres)
========  ==============================================================  ==============================

A :class:`Primitive` is a kind, a colour from :data:`PALETTE`, a size (``small`` 0.6, ``medium`` 0.8,
``large`` 1.0) and a centre. A :class:`Composite` is one primitive resting on another ("a red sphere on a blue
cube"), scaled by :data:`COMPOSITE_SCALE` and centred so the pair fits the same ball; its surface samples
are drawn from both parts in proportion to their areas and those inside the other part are dropped, so they
are area-uniform over the visible union up to the area hidden at the contact (approximately uniform).

Class labels: ``0..5`` the kinds (:data:`KINDS` order); a composite of ``top`` on ``bottom`` is
``6 + 6 * KINDS.index(top) + KINDS.index(bottom)`` (:func:`class_names` lists all 42).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from diff_3d.gaussians import Gaussians, quat_from_two_vectors

__all__ = [
    "COMPOSITE_SCALE",
    "KINDS",
    "PALETTE",
    "SIZES",
    "Composite",
    "Primitive",
    "Shape",
    "class_names",
    "num_classes",
    "sample_surface",
    "sdf",
    "sdf_normals",
    "shape_colors",
    "shape_from_dict",
    "surface_area",
    "surface_gaussians",
]

KINDS: tuple[str, ...] = ("sphere", "cube", "torus", "cone", "cylinder", "capsule")

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.20, 0.70, 0.25),
    "blue": (0.20, 0.35, 0.85),
    "yellow": (0.95, 0.85, 0.20),
    "orange": (0.95, 0.55, 0.15),
    "purple": (0.60, 0.30, 0.75),
    "cyan": (0.20, 0.75, 0.80),
    "gray": (0.50, 0.50, 0.50),
}
"""Named base colours (linear RGB in [0, 1]); none is white, the default background."""

SIZES: dict[str, float] = {"small": 0.6, "medium": 0.8, "large": 1.0}
COMPOSITE_SCALE = 0.6
"""Each part of a :class:`Composite` is scaled by this, on top of its own size."""

# dimensions at scale 1
_SPHERE_R = 0.5
_CUBE_HALF, _CUBE_ROUND = 0.4, 0.05
_TORUS_R, _TORUS_T = 0.4, 0.15
_CONE_R, _CONE_H = 0.45, 0.45  # base radius, half height
_CYL_R, _CYL_H = 0.4, 0.45
_CAPS_R, _CAPS_H = 0.3, 0.3  # radius, half length of the segment

_HALF_HEIGHT = {
    "sphere": _SPHERE_R,
    "cube": _CUBE_HALF,
    "torus": _TORUS_T,
    "cone": _CONE_H,
    "cylinder": _CYL_H,
    "capsule": _CAPS_H + _CAPS_R,
}


def _check_choice(name: str, value: str, choices: object) -> None:
    if value not in choices:  # type: ignore[operator]
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Primitive:
    """One analytic solid.

    Attributes:
        kind: one of :data:`KINDS`.
        color: a :data:`PALETTE` name.
        size: a :data:`SIZES` name (``small`` / ``medium`` / ``large``).
        center: its centre in world coordinates (y up).
        scale: extra multiplier on top of ``size`` (1 for a lone primitive; :data:`COMPOSITE_SCALE` in composites).
    """

    kind: str
    color: str = "red"
    size: str = "large"
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, KINDS)
        _check_choice("color", self.color, PALETTE)
        _check_choice("size", self.size, SIZES)
        if len(self.center) != 3:
            raise ValueError(f"center: expected 3 coordinates, got {self.center!r}")
        if not self.scale > 0:
            raise ValueError(f"scale: expected > 0, got {self.scale!r}")

    @property
    def factor(self) -> float:
        """The total scale: ``SIZES[size] * scale``."""
        return SIZES[self.size] * self.scale

    @property
    def half_height(self) -> float:
        """Half the extent along y."""
        return _HALF_HEIGHT[self.kind] * self.factor

    @property
    def rgb(self) -> tuple[float, float, float]:
        return PALETTE[self.color]

    @property
    def label(self) -> int:
        """The class label: the index of ``kind`` in :data:`KINDS`."""
        return KINDS.index(self.kind)

    @property
    def caption(self) -> str:
        """``"a red torus"``; ``"a small blue cube"`` (the size is named unless large)."""
        size = "" if self.size == "large" else f"{self.size} "
        return f"a {size}{self.color} {self.kind}"

    def to_dict(self) -> dict[str, object]:
        """The primitive as JSON-ready values (kind, colour, size word, centre, scale)."""
        return {"kind": self.kind, "color": self.color, "size": self.size, "center": list(self.center),
                "scale": self.scale}  # fmt: skip


@dataclass(frozen=True)
class Composite:
    """Primitive ``top`` resting on primitive ``bottom``; the pair is centred on the origin.

    Build with :meth:`on` (which places and scales the parts); the class label and caption follow the module
    docstring.
    """

    top: Primitive
    bottom: Primitive
    relation: str = field(default="on")

    @classmethod
    def on(cls, top: Primitive, bottom: Primitive) -> Composite:
        """``top`` on ``bottom``: both scaled by :data:`COMPOSITE_SCALE`, stacked along y, centred at 0."""
        t = Primitive(top.kind, top.color, top.size, scale=COMPOSITE_SCALE)
        b = Primitive(bottom.kind, bottom.color, bottom.size, scale=COMPOSITE_SCALE)
        total = 2 * t.half_height + 2 * b.half_height
        y_bottom = -total / 2 + b.half_height
        y_top = total / 2 - t.half_height
        return cls(
            top=Primitive(t.kind, t.color, t.size, (0.0, y_top, 0.0), COMPOSITE_SCALE),
            bottom=Primitive(b.kind, b.color, b.size, (0.0, y_bottom, 0.0), COMPOSITE_SCALE),
        )

    @property
    def parts(self) -> tuple[Primitive, Primitive]:
        return (self.top, self.bottom)

    @property
    def label(self) -> int:
        return len(KINDS) + len(KINDS) * self.top.label + self.bottom.label

    @property
    def caption(self) -> str:
        return f"{self.top.caption} {self.relation} {self.bottom.caption}"

    def to_dict(self) -> dict[str, object]:
        """The two primitives (each :meth:`Primitive.to_dict`) and their relation."""
        return {"top": self.top.to_dict(), "bottom": self.bottom.to_dict(), "relation": self.relation}


Shape = Primitive | Composite


def shape_from_dict(d: dict) -> Shape:
    """The inverse of ``to_dict`` (for caches and JSON metadata)."""
    if "top" in d:
        return Composite(_prim(d["top"]), _prim(d["bottom"]), d.get("relation", "on"))
    return _prim(d)


def _prim(d: dict) -> Primitive:
    return Primitive(d["kind"], d["color"], d["size"], tuple(d["center"]), float(d["scale"]))  # type: ignore[arg-type]


def num_classes(compositions: bool = False) -> int:
    """6 kinds, or 6 + 36 with the composites."""
    return len(KINDS) * (len(KINDS) + 1) if compositions else len(KINDS)


def class_names(compositions: bool = False) -> list[str]:
    """The name of each class label (``"sphere"``, ..., ``"sphere on cube"``, ...)."""
    names = list(KINDS)
    if compositions:
        names += [f"{t} on {b}" for t in KINDS for b in KINDS]
    return names


# -- signed distances -------------------------------------------------------------------------------------------
def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a finite gradient at 0 (points exactly on a surface or an axis); value off by <= 1e-12."""
    return torch.sqrt(x.clamp_min(1e-24))


def _sdf_unit(kind: str, p: torch.Tensor) -> torch.Tensor:
    """Signed distance to the scale-1 primitive at the origin; p (..., 3) -> (...)."""
    x, y, z = p.unbind(-1)
    rho = _sqrt(x * x + z * z)
    if kind == "sphere":
        return p.norm(dim=-1) - _SPHERE_R
    if kind == "cube":
        q = p.abs() - (_CUBE_HALF - _CUBE_ROUND)
        outside = q.clamp_min(0).norm(dim=-1)
        inside = q.max(dim=-1).values.clamp_max(0)
        return outside + inside - _CUBE_ROUND
    if kind == "torus":
        return _sqrt((rho - _TORUS_R) ** 2 + y * y) - _TORUS_T
    if kind == "cylinder":
        dx, dy = rho - _CYL_R, y.abs() - _CYL_H
        outside = _sqrt(dx.clamp_min(0) ** 2 + dy.clamp_min(0) ** 2)
        return outside + torch.maximum(dx, dy).clamp_max(0)
    if kind == "capsule":
        yc = y.clamp(-_CAPS_H, _CAPS_H)
        return _sqrt(x * x + (y - yc) ** 2 + z * z) - _CAPS_R
    if kind == "cone":
        return _cone_sdf(rho, y)
    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def _segment_distance(px, py, ax, ay, bx, by):
    """Distance from 2D points (px, py) to the segment a-b (scalars a, b)."""
    vx, vy = bx - ax, by - ay
    t = (((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)).clamp(0, 1)
    return _sqrt((px - ax - t * vx) ** 2 + (py - ay - t * vy) ** 2)


def _cone_sdf(rho: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cone as the 2D triangle (0, h), (r, -h), (0, -h) in the (rho, y) half-plane, revolved about y."""
    h, r = _CONE_H, _CONE_R
    slant = _segment_distance(rho, y, 0.0, h, r, -h)
    base = _segment_distance(rho, y, 0.0, -h, r, -h)
    dist = torch.minimum(slant, base)
    inside = (y >= -h) & (y <= h) & (rho <= r * (h - y) / (2 * h))
    return torch.where(inside, -dist, dist)


def _sdf_primitive(prim: Primitive, p: torch.Tensor) -> torch.Tensor:
    c = torch.tensor(prim.center, dtype=p.dtype, device=p.device)
    return _sdf_unit(prim.kind, (p - c) / prim.factor) * prim.factor


def sdf(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) from ``points`` (..., 3) to ``shape`` -> (...). Exact for every kind;
    for a composite, the minimum over its parts (exact outside, a bound inside)."""
    if points.shape[-1] != 3:
        raise ValueError(f"points: expected shape (..., 3), got {tuple(points.shape)}")
    if isinstance(shape, Composite):
        return torch.minimum(_sdf_primitive(shape.top, points), _sdf_primitive(shape.bottom, points))
    return _sdf_primitive(shape, points)


def sdf_normals(shape: Shape, points: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(..., 3) unit outward normals: the normalised gradient of :func:`sdf` by central differences of step
    ``eps`` (computed in float64; unlike autograd, well defined exactly on the surface)."""
    p = points.detach().to(torch.float64)
    offsets = torch.eye(3, dtype=torch.float64, device=p.device) * eps
    g = torch.stack([sdf(shape, p + o) - sdf(shape, p - o) for o in offsets], dim=-1)
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return g.to(points.dtype)


# -- areas and surface sampling -------------------------------------------------------------------------------------
def _unit_areas(kind: str) -> dict[str, float]:
    """Areas of the parts each kind is sampled from, at scale 1."""
    pi = math.pi
    if kind == "sphere":
        return {"sphere": 4 * pi * _SPHERE_R**2}
    if kind == "cube":
        a, r = _CUBE_HALF - _CUBE_ROUND, _CUBE_ROUND
        return {"faces": 6 * (2 * a) ** 2, "edges": 12 * (2 * a) * (pi * r / 2), "corners": 4 * pi * r * r}
    if kind == "torus":
        return {"torus": 4 * pi * pi * _TORUS_R * _TORUS_T}
    if kind == "cone":
        slant = math.hypot(_CONE_R, 2 * _CONE_H)
        return {"lateral": pi * _CONE_R * slant, "base": pi * _CONE_R**2}
    if kind == "cylinder":
        return {"side": 2 * pi * _CYL_R * 2 * _CYL_H, "caps": 2 * pi * _CYL_R**2}
    if kind == "capsule":
        return {"side": 2 * pi * _CAPS_R * 2 * _CAPS_H, "caps": 4 * pi * _CAPS_R**2}
    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def surface_area(shape: Shape) -> float:
    """The surface area (a composite: the sum of its parts', contact not subtracted)."""
    if isinstance(shape, Composite):
        return surface_area(shape.top) + surface_area(shape.bottom)
    return sum(_unit_areas(shape.kind).values()) * shape.factor**2


def _uniform(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=dtype)


def _sphere_dirs(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    v = torch.randn(n, 3, generator=g, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _sample_part(kind: str, part: str, n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """n points, area-uniform on one part of the scale-1 primitive."""
    u = lambda: _uniform(n, g, dtype)  # noqa: E731
    two_pi = 2 * math.pi
    if kind == "sphere":
        return _sphere_dirs(n, g, dtype) * _SPHERE_R
    if kind == "cube":
        return _sample_cube(part, n, g, dtype)
    if kind == "torus":
        return _sample_torus(n, g, dtype)
    if kind == "cone":
        theta = u() * two_pi
        if part == "lateral":  # the area within distance s of the apex grows as s^2
            t = u().sqrt()
            rad, y = t * _CONE_R, _CONE_H - t * 2 * _CONE_H
        else:
            rad, y = _CONE_R * u().sqrt(), torch.full((n,), -_CONE_H, dtype=dtype)
        return torch.stack([rad * theta.cos(), y, rad * theta.sin()], dim=-1)
    if kind == "cylinder":
        theta = u() * two_pi
        if part == "side":
            rad, y = torch.full((n,), _CYL_R, dtype=dtype), (u() * 2 - 1) * _CYL_H
        else:
            rad, y = _CYL_R * u().sqrt(), _CYL_H * torch.where(u() < 0.5, -1.0, 1.0).to(dtype)
        return torch.stack([rad * theta.cos(), y, rad * theta.sin()], dim=-1)
    if kind == "capsule":
        if part == "side":
            theta = u() * two_pi
            y = (u() * 2 - 1) * _CAPS_H
            return torch.stack([_CAPS_R * theta.cos(), y, _CAPS_R * theta.sin()], dim=-1)
        d = _sphere_dirs(n, g, dtype) * _CAPS_R
        return d + torch.stack(
            [torch.zeros(n, dtype=dtype), _CAPS_H * d[:, 1].sign(), torch.zeros(n, dtype=dtype)], -1
        )
    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def _sample_cube(part: str, n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """The rounded cube = the inner cube (half side a) grown by r: flat faces, quarter-cylinder edges, corners."""
    a, r = _CUBE_HALF - _CUBE_ROUND, _CUBE_ROUND
    signs = lambda k: torch.randint(0, 2, (n, k), generator=g).to(dtype) * 2 - 1  # noqa: E731
    axis = torch.randint(0, 3, (n,), generator=g)
    if part == "faces":  # on a face: the normal axis is +-(a + r), the other two uniform in [-a, a]
        p = (torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * a
        p[torch.arange(n), axis] = signs(1)[:, 0] * (a + r)
        return p
    if part == "edges":  # along the axis: uniform; across: a quarter circle of radius r around the edge
        phi = _uniform(n, g, dtype) * (math.pi / 2)
        s = signs(2)
        p = torch.empty(n, 3, dtype=dtype)
        p[torch.arange(n), axis] = (_uniform(n, g, dtype) * 2 - 1) * a
        i1, i2 = (axis + 1) % 3, (axis + 2) % 3
        p[torch.arange(n), i1] = s[:, 0] * (a + r * phi.cos())
        p[torch.arange(n), i2] = s[:, 1] * (a + r * phi.sin())
        return p
    d = _sphere_dirs(n, g, dtype)  # corners: the eight octants form one sphere of radius r
    return d.sign() * a + r * d


def _sample_torus(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Area element (R + t cos phi) dtheta dphi: phi by rejection, theta uniform."""
    out: list[torch.Tensor] = []
    count = 0
    while count < n:
        phi = _uniform(2 * n, g, dtype) * (2 * math.pi)
        keep = _uniform(2 * n, g, dtype) * (_TORUS_R + _TORUS_T) < _TORUS_R + _TORUS_T * phi.cos()
        out.append(phi[keep])
        count += int(keep.sum())
    phi = torch.cat(out)[:n]
    theta = _uniform(n, g, dtype) * (2 * math.pi)
    rad = _TORUS_R + _TORUS_T * phi.cos()
    return torch.stack([rad * theta.cos(), _TORUS_T * phi.sin(), rad * theta.sin()], dim=-1)


def _sample_primitive(prim: Primitive, n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    areas = _unit_areas(prim.kind)
    names = list(areas)
    probs = torch.tensor([areas[k] for k in names], dtype=torch.float64)
    which = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=g)
    p = torch.empty(n, 3, dtype=dtype)
    for i, part in enumerate(names):
        sel = which == i
        k = int(sel.sum())
        if k:
            p[sel] = _sample_part(prim.kind, part, k, g, dtype)
    return p * prim.factor + torch.tensor(prim.center, dtype=dtype)


def sample_surface(
    shape: Shape,
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on the surface of ``shape`` and their outward unit normals, each (n, 3), on the CPU.

    Area-uniform for a lone primitive (exact); for a composite, approximately so (module docstring).
    ``generator``: a CPU ``torch.Generator`` (None: a fresh, OS-seeded one).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(torch.seed() % 2**63)
    if isinstance(shape, Composite):
        points = _sample_composite(shape, n, g, dtype)
    else:
        points = _sample_primitive(shape, n, g, dtype)
    return points, sdf_normals(shape, points)


def _sample_composite(shape: Composite, n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    a_top, a_bottom = surface_area(shape.top), surface_area(shape.bottom)
    kept: list[torch.Tensor] = []
    count = 0
    while count < n:
        m = 2 * n
        n_top = int(
            torch.binomial(torch.tensor(float(m)), torch.tensor(a_top / (a_top + a_bottom)), generator=g)
        )
        top = _sample_primitive(shape.top, max(n_top, 0), g, dtype)
        bottom = _sample_primitive(shape.bottom, m - n_top, g, dtype)
        top = top[_sdf_primitive(shape.bottom, top) >= 0]
        bottom = bottom[_sdf_primitive(shape.top, bottom) >= 0]
        both = torch.cat([top, bottom])
        both = both[torch.randperm(both.shape[0], generator=g)]
        kept.append(both)
        count += both.shape[0]
    return torch.cat(kept)[:n]


def shape_colors(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """(..., 3) base colour at ``points`` (..., 3): the colour of the nearest part."""
    if isinstance(shape, Primitive):
        return torch.tensor(shape.rgb, dtype=points.dtype, device=points.device).expand(*points.shape[:-1], 3)
    d_top = _sdf_primitive(shape.top, points)
    d_bottom = _sdf_primitive(shape.bottom, points)
    top = torch.tensor(shape.top.rgb, dtype=points.dtype, device=points.device)
    bottom = torch.tensor(shape.bottom.rgb, dtype=points.dtype, device=points.device)
    return torch.where((d_top <= d_bottom)[..., None], top, bottom)


def surface_gaussians(
    shape: Shape,
    n: int,
    generator: torch.Generator | None = None,
    *,
    opacity: float = 0.9,
    thickness: float = 0.1,
    sh_degree: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Gaussians:
    """``n`` flat Gaussians on the surface of ``shape``: an initialisation for fitting and a cheap ground truth.

    Means: :func:`sample_surface`. Each is a disc tangent to the surface: in-plane standard deviation
    ``sqrt(area / n) / 2`` (half the mean spacing, so neighbours overlap), ``thickness`` times that along the
    normal (the local z axis is rotated onto the normal). Colour: the part's base colour as the SH DC term
    (higher coefficients zero); opacity ``opacity``.
    """
    if not 0 < opacity < 1:
        raise ValueError(f"opacity: expected a value in (0, 1), got {opacity!r}")
    if not thickness > 0:
        raise ValueError(f"thickness: expected > 0, got {thickness!r}")
    points, normals = sample_surface(shape, n, generator, dtype=dtype)
    sigma = math.sqrt(surface_area(shape) / n) / 2
    scales = torch.tensor([sigma, sigma, sigma * thickness], dtype=dtype).expand(n, 3).clone()
    z = torch.tensor([0.0, 0.0, 1.0], dtype=dtype).expand(n, 3)
    quats = quat_from_two_vectors(z, normals)
    return Gaussians.from_activated(
        means=points,
        scales=scales,
        opacities=torch.full((n,), opacity, dtype=dtype),
        rgb=shape_colors(shape, points),
        quats=quats,
        sh_degree=sh_degree,
    )
