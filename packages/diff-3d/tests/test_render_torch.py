"""The pure-PyTorch EWA renderer against answers known by hand: the footprint of one Gaussian, the order of
compositing, the near plane, and gradients by finite differences (float64 gradcheck)."""

import math

import pytest
import torch
from diff_3d.cameras import Camera, look_at
from diff_3d.gaussians import Gaussians
from diff_3d.render import render
from diff_3d.render.torch_ewa import render_torch

BLACK = torch.zeros(3, dtype=torch.float64)


def front_camera(size: int = 64, f: float = 80.0, c: float | None = None, z: float = 3.0) -> Camera:
    """Camera on +z at distance ``z`` looking at the origin (y up in the world, so world y is image -y)."""
    c = size / 2 if c is None else c
    return Camera(look_at((0.0, 0.0, z)).double(), f, f, c, c, size, size)


def one(mean, sigma, opacity, rgb, dtype=torch.float64) -> Gaussians:
    return Gaussians.from_activated(
        torch.tensor([mean], dtype=dtype),
        torch.full((1, 3), sigma, dtype=dtype),
        torch.tensor([opacity], dtype=dtype),
        torch.tensor([rgb], dtype=dtype),
    )


def test_isotropic_gaussian_on_the_axis_has_width_f_sigma_over_z_plus_the_low_pass():
    cam, sigma, opacity = front_camera(), 0.05, 0.5
    out = render_torch(one((0.0, 0.0, 0.0), sigma, opacity, (1.0, 1.0, 1.0)), cam, BLACK)[1]
    s2 = (cam.fx * sigma / 3.0) ** 2 + 0.3  # (f sigma / z)^2 pixels^2, plus 3DGS's 0.3 low-pass
    j, i = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="xy")
    want = opacity * torch.exp(-((j - 32) ** 2 + (i - 32) ** 2) / (2 * s2)).double()
    drawn = want >= 1 / 255  # the renderer skips contributions below 1/255
    torch.testing.assert_close(out[drawn], want[drawn], atol=1e-7, rtol=0)  # look_at is float32
    assert out[~drawn].abs().max() < 1 / 255


def test_peak_of_an_off_axis_gaussian_is_the_projected_mean():
    cam = front_camera(c=31.0)
    mean = (0.3, 0.2, -0.5)  # world y up: image row decreases
    alpha = render_torch(one(mean, 0.04, 0.6, (1.0, 1.0, 1.0)), cam, BLACK)[1]
    j, i = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="xy")
    centroid = torch.stack([(alpha * j).sum(), (alpha * i).sum()]) / alpha.sum()
    want = cam.project(torch.tensor(mean, dtype=torch.float64))
    torch.testing.assert_close(centroid, want, atol=0.02, rtol=0)  # footprint nearly symmetric off axis
    assert want[0] > 31 and want[1] < 31


def test_front_opaque_gaussian_hides_the_back_one_whatever_the_input_order():
    cam = front_camera(c=32.5)  # pixel (32, 32) centre sees the origin exactly
    red_front = one((0.0, 0.0, 0.5), 0.2, 0.999, (1.0, 0.0, 0.0))
    blue_back = one((0.0, 0.0, -0.5), 0.2, 0.9, (0.0, 0.0, 1.0))
    bg = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    a = render_torch(Gaussians.concat([red_front, blue_back]), cam, bg)[0][32, 32]
    b = render_torch(Gaussians.concat([blue_back, red_front]), cam, bg)[0][32, 32]
    torch.testing.assert_close(a, b)
    # red clamped at 0.99, then blue 0.9 of the remaining 0.01, then the background
    torch.testing.assert_close(a, torch.tensor([0.99, 0.001, 0.01 * 0.9], dtype=torch.float64))


def test_a_pixel_stops_before_transmittance_reaches_one_ten_thousandth():
    cam = front_camera(c=32.5)
    opacities = (0.99, 0.995, 0.5)  # front to back
    layers = [one((0.0, 0.0, 0.5 - 0.1 * k), 0.2, o, (1.0, 0.0, 0.0)) for k, o in enumerate(opacities)]
    _, alpha, _ = render_torch(Gaussians.concat(layers), cam, BLACK, max_alpha=0.999)
    # T after the first is 0.01; the second would bring it to 5e-5 <= 1e-4: the pixel stops there, so the
    # third is not drawn either (skipping only the second would give 1 - 0.01 * 0.5)
    assert alpha[32, 32].item() == pytest.approx(0.99, abs=1e-9)


def test_gaussians_behind_the_near_plane_are_culled():
    cam = front_camera()
    behind = one((0.0, 0.0, 3.5), 0.1, 0.9, (1.0, 0.0, 0.0))
    rgb, alpha, _ = render_torch(behind, cam, BLACK)
    assert alpha.abs().max() == 0 and rgb.abs().max() == 0


def test_expected_depth_is_the_distance_along_the_axis():
    cam = front_camera(c=32.5)
    _, alpha, depth = render_torch(one((0.0, 0.0, 0.5), 0.2, 0.5, (1.0, 0.0, 0.0)), cam, BLACK)
    assert depth[32, 32].item() == pytest.approx(2.5)
    assert depth[alpha == 0].eq(0).all()


def test_background_shows_where_nothing_is_drawn_and_render_matches_render_torch():
    cam = front_camera()
    gs = one((0.0, 0.0, 0.0), 0.05, 0.5, (1.0, 0.0, 0.0))
    out = render(gs, cam, (0.2, 0.4, 0.6), backend="torch")
    torch.testing.assert_close(out.rgb[0, 0], torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64))
    with pytest.raises(ValueError, match="backend: expected one of auto, torch, gsplat"):
        render(gs, cam, backend="vulkan")
    with pytest.raises(ValueError, match="background: expected an RGB colour"):
        render(gs, cam, (0.0, 1.0), backend="torch")


def test_image_sizes_that_are_not_multiples_of_the_tile():
    cam = Camera(look_at((0.0, 0.0, 3.0)).double(), 40.0, 40.0, 18.5, 11.0, 37, 22)
    rgb, alpha, depth = render_torch(one((0.0, 0.0, 0.0), 0.1, 0.7, (1.0, 0.0, 0.0)), cam, BLACK)
    assert rgb.shape == (22, 37, 3) and alpha.shape == depth.shape == (22, 37)
    row, col = divmod(int(alpha.argmax()), 37)
    assert (col, row) == (18, 10)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    n = 3
    base = Gaussians(
        means=torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.2,
        quats=torch.randn(n, 4, generator=g, dtype=torch.float64),
        log_scales=torch.full((n, 3), math.log(0.15), dtype=torch.float64)
        + 0.2 * torch.randn(n, 3, generator=g, dtype=torch.float64),
        opacity_logits=torch.randn(n, generator=g, dtype=torch.float64) * 0.5,
        sh=torch.randn(n, 4, 3, generator=g, dtype=torch.float64) * 0.3,
    )
    cam = Camera(look_at((0.4, 0.3, 3.0)).double(), 30.0, 30.0, 8.0, 8.0, 16, 16)  # one tile
    bg = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)

    def f(means, quats, log_scales, opacity_logits, sh):
        out = render_torch(Gaussians(means, quats, log_scales, opacity_logits, sh), cam, bg)
        return out[0], out[1]

    inputs = tuple(t.clone().requires_grad_(True) for t in base.parameters().values())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
