"""Analytic primitives: samples lie on the surface, distances are exact, sampling is area-uniform where the
answer is known by hand, captions and labels read as documented."""

import math

import pytest
import torch
from diff_3d.data.primitives import (
    KINDS,
    PALETTE,
    Composite,
    Primitive,
    class_names,
    num_classes,
    sample_surface,
    sdf,
    sdf_normals,
    shape_from_dict,
    surface_area,
    surface_gaussians,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SHAPES = [Primitive(k, "blue", "medium") for k in KINDS] + [
    Composite.on(Primitive("sphere", "red"), Primitive("cube", "blue")),
    Composite.on(Primitive("cone", "green"), Primitive("torus", "yellow")),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.caption)
def test_surface_samples_lie_on_the_surface_with_unit_outward_normals(shape):
    p, n = sample_surface(shape, 2000, gen(), dtype=torch.float64)
    assert p.shape == n.shape == (2000, 3)
    assert sdf(shape, p).abs().max() < 1e-6
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2000, dtype=torch.float64))
    # outward: a small step along the normal goes outside (in a composite, except near the contact of its parts)
    outside = (sdf(shape, p + 1e-3 * n) > 0).double().mean()
    assert outside > (0.9 if isinstance(shape, Composite) else 0.999)


@pytest.mark.parametrize("kind", KINDS)
def test_signed_distance_has_unit_gradient_almost_everywhere(kind):
    """An exact SDF is 1-Lipschitz with |grad| = 1 off its medial axis."""
    p = (torch.rand(3000, 3, generator=gen(1), dtype=torch.float64) * 2 - 1) * 0.9
    with torch.enable_grad():
        p.requires_grad_(True)
        (g,) = torch.autograd.grad(sdf(Primitive(kind), p).sum(), p)
    assert ((g.norm(dim=1) - 1).abs() < 1e-6).double().mean() > 0.99


def test_signed_distances_at_points_known_by_hand():
    sphere = Primitive("sphere", size="large")  # radius 0.5
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 0.5, 0]], dtype=torch.float64)
    torch.testing.assert_close(sdf(sphere, pts), torch.tensor([-0.5, 0.5, 0.0], dtype=torch.float64))
    cone = Primitive("cone")  # apex (0, 0.45, 0), base radius 0.45 at y = -0.45
    pts = torch.tensor([[0.0, 0.45, 0], [0.0, 1.45, 0], [0.0, -0.55, 0], [0.0, -0.4, 0]], dtype=torch.float64)
    torch.testing.assert_close(sdf(cone, pts), torch.tensor([0.0, 1.0, 0.1, -0.05], dtype=torch.float64))
    torus = Primitive("torus")  # R 0.4, tube 0.15
    pts = torch.tensor([[0.4, 0, 0], [0.0, 0, 0], [0.0, 0.0, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(sdf(torus, pts), torch.tensor([-0.15, 0.25, 0.25], dtype=torch.float64))
    small_cube = Primitive("cube", size="small", center=(1.0, 0.0, 0.0))  # half side 0.24
    torch.testing.assert_close(
        sdf(small_cube, torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)),
        torch.tensor([0.5 - 0.24], dtype=torch.float64),
    )


def test_sphere_normals_are_radial():
    p, n = sample_surface(Primitive("sphere"), 500, gen(), dtype=torch.float64)
    torch.testing.assert_close(n, p / p.norm(dim=1, keepdim=True))
    torch.testing.assert_close(sdf_normals(Primitive("sphere"), p), n)


def _fraction(mask: torch.Tensor) -> float:
    return mask.double().mean().item()


def test_sampling_is_area_uniform_on_cylinder_cone_and_torus():
    m = 40_000
    p, _ = sample_surface(Primitive("cylinder"), m, gen(2), dtype=torch.float64)  # r 0.4, half height 0.45
    caps = p[:, 1].abs() > 0.45 - 1e-9
    assert _fraction(caps) == pytest.approx(0.4 / (0.4 + 0.9), abs=0.01)  # 2 pi r^2 / (2 pi r^2 + 2 pi r 2h)
    p, _ = sample_surface(Primitive("cone"), m, gen(3), dtype=torch.float64)
    slant = math.hypot(0.45, 0.9)
    assert _fraction(p[:, 1] < -0.45 + 1e-9) == pytest.approx(0.45 / (0.45 + slant), abs=0.01)
    # the lateral area above mid-height is a quarter of the lateral area
    lateral = p[:, 1] > -0.45 + 1e-9
    assert _fraction(p[lateral, 1] > 0) == pytest.approx(0.25, abs=0.01)
    p, _ = sample_surface(Primitive("torus"), m, gen(4), dtype=torch.float64)  # R 0.4, t 0.15
    outer = p[:, [0, 2]].norm(dim=1) > 0.4
    assert _fraction(outer) == pytest.approx((math.pi * 0.4 + 2 * 0.15) / (2 * math.pi * 0.4), abs=0.01)


def test_rounded_cube_samples_hit_faces_edges_and_corners_by_area():
    p, _ = sample_surface(Primitive("cube"), 40_000, gen(5), dtype=torch.float64)
    a, r = 0.35, 0.05
    flat = (p.abs() > a + r - 1e-9).any(dim=1)
    total = 6 * (2 * a) ** 2 + 12 * 2 * a * math.pi * r / 2 + 4 * math.pi * r * r
    assert _fraction(flat) == pytest.approx(6 * (2 * a) ** 2 / total, abs=0.01)
    assert surface_area(Primitive("cube")) == pytest.approx(total)


def test_captions_labels_and_class_names():
    assert Primitive("torus", "red").caption == "a red torus"
    assert Primitive("cube", "blue", "small").caption == "a small blue cube"
    c = Composite.on(Primitive("sphere", "red"), Primitive("cube", "blue"))
    assert c.caption == "a red sphere on a blue cube"
    assert Primitive("torus").label == 2
    assert c.label == 6 + 6 * 0 + 1
    names = class_names(compositions=True)
    assert len(names) == num_classes(True) == 42 and names[c.label] == "sphere on cube"
    assert class_names() == list(KINDS) and num_classes() == 6


def test_composite_parts_touch_and_the_pair_is_centred():
    c = Composite.on(Primitive("capsule", "red"), Primitive("cylinder", "blue", "small"))
    top, bottom = c.top, c.bottom
    assert top.center[1] - top.half_height == pytest.approx(bottom.center[1] + bottom.half_height)
    assert top.center[1] + top.half_height == pytest.approx(-(bottom.center[1] - bottom.half_height))
    assert shape_from_dict(c.to_dict()) == c
    assert shape_from_dict(Primitive("cone").to_dict()) == Primitive("cone")


def test_bad_primitive_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="kind: expected one of sphere, cube"):
        Primitive("teapot")
    with pytest.raises(ValueError, match="color: expected one of"):
        Primitive("cube", "white")
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        sample_surface(Primitive("cube"), 0)


def test_surface_gaussians_are_discs_on_the_surface_with_the_shape_colour():
    c = Composite.on(Primitive("sphere", "red"), Primitive("cube", "blue"))
    gs = surface_gaussians(c, 500, gen(6))
    again = surface_gaussians(c, 500, gen(6))
    assert torch.equal(gs.to_vector(), again.to_vector())
    assert gs.num == 500 and gs.sh_degree == 0
    assert sdf(c, gs.means).abs().max() < 1e-5
    colours = {tuple(round(v, 4) for v in row) for row in gs.colors().tolist()}
    assert colours == {tuple(round(v, 4) for v in PALETTE[k]) for k in ("red", "blue")}
    # the thin local z axis is the surface normal
    z_axis = gs.rotations()[:, :, 2]
    torch.testing.assert_close(z_axis, sdf_normals(c, gs.means), atol=1e-5, rtol=0)
    s = gs.scales()
    assert torch.allclose(s[:, 2], 0.1 * s[:, 0])
    assert s[0, 0].item() == pytest.approx(math.sqrt(surface_area(c) / 500) / 2, rel=1e-6)
