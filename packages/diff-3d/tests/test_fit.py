"""Fitting: a sphere's true renders are matched on the training views and on views between them."""

import pytest
import torch
from diff_3d.cameras import orbit_cameras
from diff_3d.data.primitives import Primitive, surface_gaussians
from diff_3d.fit import FitSettings, fit_gaussians, random_init
from diff_3d.metrics import psnr
from diff_3d.render import render_views
from diff_3d.render.sdf_trace import render_sdf_views


@pytest.mark.slow
def test_fitting_a_sphere_from_eight_views_reaches_30_db_and_keeps_the_budget():
    # measured on CPU (seeded): 34.7 dB mean (32.6 min) on the training views after 120 steps, 33.0 dB on the
    # views between them; about 15.5 dB at the start
    sphere = Primitive("sphere", "red")
    cams = orbit_cameras(8, width=32, height=32)
    images, _ = render_sdf_views(sphere, cams)
    init = surface_gaussians(sphere, 400, torch.Generator().manual_seed(0))
    settings = FitSettings(steps=120, views_per_step=2)
    result = fit_gaussians(
        images, cams, init, settings, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert result.gaussians.num == 400
    assert result.psnr.shape == (8,)
    assert result.psnr.min() >= 30.0
    assert result.losses[-1] < 0.5 * result.losses[0]
    # views half-way between the training views
    novel = orbit_cameras(8, width=32, height=32, start_azimuth=22.5)
    truth, _ = render_sdf_views(sphere, novel)
    with torch.no_grad():
        seen = render_views(result.gaussians, novel, backend="torch").clamp(0, 1)
    assert psnr(seen, truth).min() >= 28.0


def test_zero_steps_returns_the_initialisation_and_random_init_fills_the_box():
    gs = random_init(100, extent=0.5, generator=torch.Generator().manual_seed(0))
    assert gs.means.abs().max() <= 0.5 and gs.num == 100
    cams = orbit_cameras(2, width=16, height=16)
    images = torch.ones(2, 16, 16, 3)
    result = fit_gaussians(images, cams, gs, FitSettings(steps=0), progress=False)
    assert torch.equal(result.gaussians.means, gs.means)
