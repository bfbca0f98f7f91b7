"""The "true renders" of analytic primitives: sphere tracing of their signed distance functions (Hart 1996).

Each pixel's ray marches ``t <- t + sdf(o + t d)`` from where it enters a bounding sphere until the distance
is below ``eps`` (a hit) or it leaves the sphere (a miss). A hit is shaded Lambert plus ambient with a light
fixed in the world: ``rgb = base * (ambient + (1 - ambient) max(0, n . l))``, ``n`` the SDF normal, ``base``
the primitive's colour; a miss shows the background. ``supersample`` rays per pixel side are averaged (colour
and coverage), so edges are anti-aliased and ``alpha`` is the covered fraction of the pixel.

These images are the ground truth that Gaussians are fitted to (:mod:`diff_3d.fit`) and that generated
objects of the procedural set are compared with: Lambertian, so the same surface point has the same colour
from every view, which a degree-0 Gaussian set can represent exactly.
"""

from __future__ import annotations

import torch

from diff_3d.cameras import Camera
from diff_3d.data.primitives import Shape, sdf, sdf_normals, shape_colors
from diff_3d.render import RenderOutput, as_background

__all__ = ["LIGHT_DIRECTION", "render_sdf", "render_sdf_views"]

LIGHT_DIRECTION = (0.4, 0.8, 0.45)
"""Direction towards the light (world, y up; normalised when used): above, to the right and in front."""


def render_sdf(
    shape: Shape,
    camera: Camera,
    background: torch.Tensor | tuple[float, float, float] | float = (1.0, 1.0, 1.0),
    *,
    supersample: int = 2,
    ambient: float = 0.45,
    light: tuple[float, float, float] = LIGHT_DIRECTION,
    bound: float = 1.5,
    max_steps: int = 96,
    eps: float = 1e-4,
) -> RenderOutput:
    """Sphere-trace ``shape`` from ``camera``: rgb (H, W, 3), alpha (H, W) coverage, depth (H, W) (camera z
    averaged over the covered sub-pixels, 0 where none is). ``bound``: radius of the bounding sphere at the
    origin that holds the shape. CPU float32 unless ``camera.viewmat`` lives elsewhere."""
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample: expected an integer >= 1, got {supersample!r}")
    if not 0 <= ambient <= 1:
        raise ValueError(f"ambient: expected a value in [0, 1], got {ambient!r}")
    s = supersample
    cam = camera.resized(camera.width * s, camera.height * s)
    origins, dirs = cam.rays()
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    hit, t = _march(shape, o, d, bound, max_steps, eps)
    p = o + t[:, None] * d
    n = sdf_normals(shape, p)
    lvec = torch.tensor(light, dtype=p.dtype, device=p.device)
    lvec = lvec / lvec.norm()
    shade = ambient + (1 - ambient) * (n @ lvec).clamp_min(0)
    rgb = shape_colors(shape, p) * shade[:, None]
    z = cam.world_to_camera(p)[:, 2]
    mask = hit.to(p.dtype)
    bg = as_background(background, p)
    rgb = rgb * mask[:, None] + bg * (1 - mask[:, None])

    def down(x: torch.Tensor) -> torch.Tensor:  # (H s, W s, C) -> (H, W, C) box filter
        c = x.shape[-1]
        return x.reshape(camera.height, s, camera.width, s, c).mean(dim=(1, 3))

    h2, w2 = camera.height * s, camera.width * s
    alpha = down(mask.reshape(h2, w2, 1))[..., 0]
    depth_sum = down((z * mask).reshape(h2, w2, 1))[..., 0]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-12), torch.zeros_like(alpha))
    return RenderOutput(down(rgb.reshape(h2, w2, 3)), alpha, depth)


def _march(
    shape: Shape, o: torch.Tensor, d: torch.Tensor, bound: float, max_steps: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere tracing inside the sphere of radius ``bound``: (hit (R,) bool, t (R,))."""
    # entry and exit of the bounding sphere: |o + t d|^2 = bound^2
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - bound * bound
    disc = b * b - c
    inside = disc > 0
    root = disc.clamp_min(0).sqrt()
    t = (-b - root).clamp_min(0)
    t_far = -b + root
    hit = torch.zeros_like(inside)
    active = inside.clone()
    for _ in range(max_steps):
        if not bool(active.any()):
            break
        idx = torch.nonzero(active).squeeze(1)
        dist = sdf(shape, o[idx] + t[idx, None] * d[idx])
        done = dist < eps
        hit[idx[done]] = True
        t[idx[~done]] += dist[~done]
        gone = t[idx] > t_far[idx]
        active[idx[done | gone]] = False
    return hit, t


def render_sdf_views(
    shape: Shape,
    cameras: list[Camera],
    background: torch.Tensor | tuple[float, float, float] | float = (1.0, 1.0, 1.0),
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """True renders from every camera: images (V, H, W, 3) and alphas (V, H, W)."""
    outs = [render_sdf(shape, cam, background, **kwargs) for cam in cameras]  # type: ignore[arg-type]
    return torch.stack([o.rgb for o in outs]), torch.stack([o.alpha for o in outs])
