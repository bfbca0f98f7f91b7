"""Rendering Gaussians: :func:`render` with a pure-PyTorch EWA backend (:mod:`.torch_ewa`, any device,
differentiable, for small images) and gsplat (:mod:`.gsplat_backend`, CUDA), plus ground-truth renders of
analytic primitives by sphere tracing (:mod:`.sdf_trace`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from diff_3d.cameras import Camera
from diff_3d.gaussians import Gaussians

__all__ = ["BACKENDS", "RenderOutput", "as_background", "render", "render_views", "resolve_backend"]

Backend = Literal["auto", "torch", "gsplat"]
BACKENDS = ("auto", "torch", "gsplat")


@dataclass
class RenderOutput:
    """One rendered view.

    Attributes:
        rgb: (H, W, 3) colour composited over the background.
        alpha: (H, W) accumulated opacity ``1 - T``.
        depth: (H, W) expected camera-space depth of the drawn Gaussians (0 where nothing is drawn).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def as_background(
    background: torch.Tensor | tuple[float, float, float] | float, like: torch.Tensor
) -> torch.Tensor:
    """A (3,) background colour tensor with ``like``'s dtype and device, from a tensor, a tuple or a grey level."""
    if isinstance(background, (int, float)):
        background = (float(background),) * 3
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if bg.shape != (3,):
        raise ValueError(f"background: expected an RGB colour of 3 values, got shape {tuple(bg.shape)}")
    return bg


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"gsplat"``: ``auto`` is gsplat on CUDA when it can be imported, else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    from diff_3d.render.gsplat_backend import gsplat_available

    return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"


def render(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor | tuple[float, float, float] | float = (1.0, 1.0, 1.0),
    backend: Backend = "auto",
    *,
    near: float = 0.01,
    max_alpha: float | None = None,
) -> RenderOutput:
    """Render ``gaussians`` seen by ``camera`` (OpenCV convention, :mod:`diff_3d.cameras`) over ``background``.

    ``backend``: ``"torch"`` (:func:`~diff_3d.render.torch_ewa.render_torch`), ``"gsplat"`` (CUDA) or
    ``"auto"``. ``max_alpha``: the per-Gaussian opacity clamp of the torch backend (default 0.99 as 3DGS;
    gsplat's is fixed at 0.999).
    """
    bg = as_background(background, gaussians.means)
    name = resolve_backend(backend, gaussians.device)
    if name == "gsplat":
        from diff_3d.render.gsplat_backend import render_gsplat

        rgb, alpha, depth = render_gsplat(gaussians, camera, bg, near=near)
    else:
        from diff_3d.render.torch_ewa import render_torch

        rgb, alpha, depth = render_torch(gaussians, camera, bg, near=near, max_alpha=max_alpha or 0.99)
    return RenderOutput(rgb, alpha, depth)


def render_views(
    gaussians: Gaussians,
    cameras: list[Camera],
    background: torch.Tensor | tuple[float, float, float] | float = (1.0, 1.0, 1.0),
    backend: Backend = "auto",
) -> torch.Tensor:
    """(V, H, W, 3) renders of ``gaussians`` from each camera (all cameras the same size)."""
    return torch.stack([render(gaussians, cam, background, backend).rgb for cam in cameras])
