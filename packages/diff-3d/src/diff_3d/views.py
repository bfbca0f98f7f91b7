"""Pictures of generated objects: fixed camera rigs and batched rendering through :func:`diff_3d.render.render_views`
(the package's renderer; this module only chooses cameras and stacks images).

Images are ``(H, W, 3)`` floats in ``[0, 1]`` on a white background. Objects are taken to lie in the cube
``[-extent, extent]^3``; the cameras orbit the origin at ``RADIUS extent`` (2.2), ``ELEVATION`` (30) degrees up.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.gaussians import Gaussians

__all__ = ["render_views", "turntable_cameras", "view_cameras"]

ELEVATION = 30.0
RADIUS = 2.2


def view_cameras(views: int, size: int, extent: float = 1.0) -> list[Camera]:
    """``views`` cameras evenly spaced in azimuth (starting at 30 degrees) at ``ELEVATION`` degrees, ``size`` x ``size``
    pixels: the rig of the classifier and of the sample grids."""
    return orbit_cameras(views, RADIUS * extent, ELEVATION, width=size, height=size, start_azimuth=30.0)


def turntable_cameras(frames: int, size: int, extent: float = 1.0) -> list[Camera]:
    """``frames`` cameras of one turn about the y axis."""
    return orbit_cameras(frames, RADIUS * extent, ELEVATION, width=size, height=size)


@torch.no_grad()
def render_views(
    objects: list[Gaussians], cameras: list[Camera], device: torch.device | str = "cpu"
) -> Tensor:
    """Every object from every camera on white (:func:`diff_3d.render.render_views`):
    ``(len(objects), len(cameras), H, W, 3)`` in ``[0, 1]`` on the CPU."""
    from diff_3d.render import render_views as render_object

    cams = [cam.to(device) for cam in cameras]
    return torch.stack([render_object(g.to(device), cams).clamp(0, 1).cpu() for g in objects])
