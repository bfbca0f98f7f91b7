"""True renders by sphere tracing, checked against the silhouette and shading of a sphere worked out by hand."""

import math

import pytest
import torch
from diff_3d.cameras import Camera, look_at, orbit_cameras
from diff_3d.data.primitives import PALETTE, Composite, Primitive
from diff_3d.render.sdf_trace import render_sdf, render_sdf_views


def test_sphere_silhouette_area_and_centre_shading():
    d, f, size = 3.0, 60.0, 48
    cam = Camera(look_at((0.0, 0.0, d)), f, f, size / 2, size / 2, size, size)
    sphere = Primitive("sphere", "red")  # radius 0.5
    out = render_sdf(sphere, cam, (0.0, 0.0, 0.0), supersample=4, light=(0.0, 0.0, 1.0), ambient=0.2)
    # the silhouette of a sphere seen from distance d is a disc of angular radius asin(r / d)
    radius_px = f * math.tan(math.asin(0.5 / d))
    assert out.alpha.sum().item() == pytest.approx(math.pi * radius_px**2, rel=0.02)
    # at the centre the normal faces the camera and the light: full Lambert
    centre = out.rgb[size // 2, size // 2]
    torch.testing.assert_close(centre, torch.tensor(PALETTE["red"]), atol=0.01, rtol=0)
    assert out.depth[size // 2, size // 2].item() == pytest.approx(d - 0.5, abs=0.02)
    assert out.alpha[0, 0] == 0 and out.depth[0, 0] == 0


def test_views_of_a_composite_show_both_colours_and_the_background():
    shape = Composite.on(Primitive("sphere", "red"), Primitive("cube", "blue"))
    images, alphas = render_sdf_views(shape, orbit_cameras(2, width=32, height=32), (1.0, 1.0, 1.0))
    assert images.shape == (2, 32, 32, 3) and alphas.shape == (2, 32, 32)
    assert 0.05 < alphas.mean() < 0.6
    top, bottom = images[0, 8:14, 14:18], images[0, 20:26, 14:18]
    assert top[..., 0].mean() > top[..., 2].mean() and bottom[..., 2].mean() > bottom[..., 0].mean()
    torch.testing.assert_close(images[0, 0, 0], torch.ones(3))
