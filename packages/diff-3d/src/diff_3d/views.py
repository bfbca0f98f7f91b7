"""Pictures of generated objects: fixed camera rigs and batched rendering through :func:`diff_3d.render.render`
(the package's renderer; this module only chooses cameras and stacks images).

Images are ``(H, W, 3)`` floats in ``[0, 1]`` on a white background. Objects are taken to lie in the cube
``[-extent, extent]^3``; the cameras orbit the origin at ``radius = 3 extent``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.gaussians import Gaussians

__all__ = ["render_image", "render_views", "turntable_cameras", "view_cameras"]

ELEVATION = 20.0


def view_cameras(views: int, size: int, extent: float = 1.0) -> list[Camera]:
    """``views`` cameras evenly spaced in azimuth (starting at 30 degrees) at ``ELEVATION`` degrees, ``size`` x ``size``
    pixels: the rig of the classifier and of the sample grids."""
    return orbit_cameras(views, 3.0 * extent, ELEVATION, width=size, height=size, start_azimuth=30.0)


def turntable_cameras(frames: int, size: int, extent: float = 1.0) -> list[Camera]:
    """``frames`` cameras of one turn about the y axis."""
    return orbit_cameras(frames, 3.0 * extent, ELEVATION, width=size, height=size)


def render_image(gaussians: Gaussians, camera: Camera) -> Tensor:
    """One ``(H, W, 3)`` image in ``[0, 1]`` of ``gaussians`` seen by ``camera`` on white."""
    from diff_3d.render import render

    out = render(gaussians, camera, background=torch.ones(3, device=gaussians.device))
    image = out if isinstance(out, Tensor) else out.image
    return image[..., :3].clamp(0, 1)


@torch.no_grad()
def render_views(
    objects: list[Gaussians], cameras: list[Camera], device: torch.device | str = "cpu"
) -> Tensor:
    """Every object from every camera: ``(len(objects), len(cameras), H, W, 3)`` on the CPU."""
    out = []
    for g in objects:
        g = g.to(device)
        out.append(torch.stack([render_image(g, cam.to(device)) for cam in cameras]).cpu())
    return torch.stack(out)
