"""Score distillation: the gradient against hand-computed formulas, on analytic priors, the annealing schedule,
and the evaluation (silhouette IoU against the lens-area formula, saturation)."""

import math

import pytest
import torch
from diff_3d.cameras import Camera, look_at
from diff_3d.config import SDSSettings
from diff_3d.data.primitives import Primitive
from diff_3d.render.sdf_trace import render_sdf
from diff_3d.sds import (
    distillation_gradient,
    draw_time,
    init_blob,
    max_time,
    saturation_stats,
    sds_loss,
    sds_weight,
    silhouette_iou,
)
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.denoiser import Denoiser
from diffcore.paths.schedules import get as get_schedule

A, B, NULL = 0.3, 0.7, 5


def linear_eps(x, t, y):
    """A "prior" with a known eps prediction: ``a x_t + b y`` (y broadcast over pixels)."""
    return A * x + B * y.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("guidance", [1.0, 7.5, 100.0])
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_sds_gradient_is_w_times_guided_eps_minus_noise_for_a_linear_prior(guidance, t):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(theta.shape, generator=g, dtype=torch.float64)
    den = Denoiser(linear_eps, "vp-cosine", "eps")
    y = torch.tensor([1, 2])
    x = 2 * theta  # a linear "render"
    grad = distillation_gradient(den, x, t, noise, {"y": y}, {"y": torch.full_like(y, NULL)}, guidance)
    sds_loss(x, grad).backward()
    # by hand: x_t = alpha x + sigma eps, eps_c = a x_t + b y, eps_u = a x_t + b null, w = 1 - alpha_bar
    sched = get_schedule("vp-cosine")
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = float(sched.alpha(tt)), float(sched.sigma(tt))
    x_t = alpha * x.detach() + sigma * noise
    eps_c = A * x_t + B * y.double().reshape(-1, 1, 1, 1)
    eps_u = A * x_t + B * NULL
    w = 1 - alpha**2
    expected = w * (eps_u + guidance * (eps_c - eps_u) - noise)
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(theta.grad, 2 * expected)  # chain rule through the render, no U-Net Jacobian


def test_csd_gradient_is_w_times_scale_times_the_classifier_score():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    den = Denoiser(linear_eps, "vp-cosine", "eps")
    y = torch.tensor([1, 3])
    grad = distillation_gradient(den, x, 0.4, noise, {"y": y}, {"y": torch.full_like(y, NULL)}, 20.0, "csd")
    w = 1 - float(get_schedule("vp-cosine").alpha(torch.tensor(0.4, dtype=torch.float64))) ** 2
    expected = (w * 20.0 * B * (y.double() - NULL)).reshape(-1, 1, 1, 1).expand_as(x)
    torch.testing.assert_close(grad, expected)


def test_sds_on_a_rectified_flow_prior_is_t_squared_times_one_minus_t_times_the_velocity_error():
    # velocity network v_hat = c x_t + d (linear); eps_hat - eps = (1 - t)(v_hat - (eps - x)) (module docstring)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    den = Denoiser(lambda x_t, t: 0.4 * x_t - 0.2, "rectified-flow", "velocity")
    t = 0.3
    grad = distillation_gradient(den, x, t, noise, {}, {}, 1.0)
    x_t = (1 - t) * x + t * noise
    expected = t**2 * (1 - t) * ((0.4 * x_t - 0.2) - (noise - x))
    torch.testing.assert_close(grad, expected)
    assert sds_weight(den, t) == pytest.approx(t**2)


def test_sds_weight_is_one_minus_alpha_bar_on_a_vp_path():
    den = Denoiser(linear_eps, "vp-cosine", "eps")
    sched = get_schedule("vp-cosine")
    for t in (0.02, 0.5, 0.98):
        alpha_bar = float(sched.alpha(torch.tensor(t, dtype=torch.float64))) ** 2
        assert sds_weight(den, t) == pytest.approx(1 - alpha_bar)


def _distil_point(den, theta0, steps=600, seed=0):
    theta = torch.tensor([theta0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.1)
    settings = SDSSettings(steps=steps, t_min=0.02, t_max_start=0.98, t_max_end=0.3)
    g = torch.Generator().manual_seed(seed)
    for step in range(settings.steps):
        t = draw_time(step, settings.steps, settings, g)
        noise = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        grad = distillation_gradient(den, theta, t, noise, {}, {}, 1.0)
        opt.zero_grad()
        sds_loss(theta, grad).backward()
        opt.step()
    return theta.detach()[0]


def test_sds_with_an_exact_gaussian_prior_moves_a_point_to_its_mean():
    gm = GaussianMixture.gaussian(torch.tensor([1.0, -0.5]), torch.tensor([0.01, 0.01]))
    end = _distil_point(gm.denoiser("vp-cosine", "eps"), [-1.0, 1.0])
    assert float((end - gm.means[0]).norm()) < 0.1  # from 2.5 away


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sds_with_an_exact_gaussian_mixture_prior_ends_at_a_mode(seed):
    # SDS is mode-seeking: the point ends at one of the modes, not between them (the mean is (-0.25, 0.75))
    gm = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 1.0], [-1.5, 0.5]]),
                         torch.full((2, 2), 0.01))  # fmt: skip
    end = _distil_point(gm.denoiser("vp-cosine", "eps"), [0.2, -0.3], seed=seed)
    assert float((end - gm.means).norm(dim=1).min()) < 0.1


def test_time_annealing_runs_linearly_from_the_start_to_the_end_maximum():
    assert max_time(0, 11, 0.98, 0.5) == pytest.approx(0.98)
    assert max_time(5, 11, 0.98, 0.5) == pytest.approx(0.74)
    assert max_time(10, 11, 0.98, 0.5) == pytest.approx(0.5)
    assert max_time(0, 1, 0.98, 0.5) == pytest.approx(0.98)
    s = SDSSettings(steps=100, t_min=0.02, t_max_start=0.98, t_max_end=0.5)
    g = torch.Generator().manual_seed(0)
    late = [draw_time(99, 100, s, g) for _ in range(500)]
    assert min(late) >= 0.02 and max(late) <= 0.5 and max(late) > 0.45
    with pytest.raises(ValueError, match="step"):
        max_time(11, 11, 0.98, 0.5)


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match="method"):
        SDSSettings(method="vsd")
    with pytest.raises(ValueError, match="t_min"):
        SDSSettings(t_min=0.6, t_max_end=0.5)
    with pytest.raises(ValueError, match="method"):
        distillation_gradient(Denoiser(linear_eps, "vp-cosine", "eps"), torch.zeros(1, 2), 0.5,
                              torch.zeros(1, 2), {}, {}, 1.0, "vsd")  # fmt: skip


def _far_camera(size: int = 64) -> Camera:
    # 40 units away on +z, field of view 2 atan(1 / 40): nearly orthographic, 2 world units across the image
    fov = 2 * math.atan(1.0 / 40.0)
    return Camera.from_fov(look_at((0.0, 0.0, 40.0)), size, size, fov)


def _lens_iou(r: float, d: float) -> float:
    """IoU of two discs of radius r whose centres are d apart."""
    inter = 2 * r * r * math.acos(d / (2 * r)) - 0.5 * d * math.sqrt(4 * r * r - d * d)
    return inter / (2 * math.pi * r * r - inter)


@pytest.mark.parametrize("shift", [0.2, 0.4, 0.7])
def test_silhouette_iou_of_a_sphere_is_one_with_itself_and_the_lens_overlap_when_shifted(shift):
    cam = _far_camera()
    a = render_sdf(Primitive("sphere", "red"), cam, supersample=4).alpha
    b = render_sdf(Primitive("sphere", "red", center=(shift, 0.0, 0.0)), cam, supersample=4).alpha
    assert float(silhouette_iou(a, a)) == 1.0
    r = 0.5 * 40 / math.sqrt(40**2 - 0.25)  # the silhouette's radius on the plane through the origin
    assert float(silhouette_iou(a, b)) == pytest.approx(_lens_iou(r, shift), abs=0.015)


def test_saturation_stats_of_known_colours():
    rgb = torch.tensor([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [[0.8, 0.4, 0.4], [0.0, 0.0, 0.0]]]])
    alpha = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # the black pixel is background
    s = saturation_stats(rgb, alpha)
    assert s["saturation"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert s["clipped"] == pytest.approx(3 / 9)  # 1, 0, 0 of the red pixel


def test_init_blob_lies_in_its_ball_with_the_given_opacity():
    g = init_blob(500, radius=0.3, opacity=0.2, generator=torch.Generator().manual_seed(0))
    assert g.num == 500 and float(g.means.norm(dim=1).max()) <= 0.3 + 1e-6
    torch.testing.assert_close(g.opacities(), torch.full((500,), 0.2))
    with pytest.raises(ValueError, match="opacity"):
        init_blob(10, opacity=1.5)
