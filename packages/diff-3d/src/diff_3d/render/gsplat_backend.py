"""The gsplat backend: :func:`gsplat.rasterization` (CUDA only).

gsplat is imported inside :func:`render_gsplat`, never when :mod:`diff_3d` is imported. On its first use in
a fresh environment gsplat compiles its CUDA kernels (several minutes, once; they are cached under
``~/.cache/torch_extensions``) unless a wheel with prebuilt kernels was installed; it needs the CUDA toolkit
(``nvcc``) matching torch's CUDA for that build, and it has no CPU path.

Settings match :func:`diff_3d.render.torch_ewa.render_torch` with ``max_alpha=0.999`` (gsplat's fixed
clamp): the same 0.3 low-pass (``eps2d``), near plane, opacity-aware tile boxes, 1/255 skip and
``1e-4`` transmittance stop; the SH colours are evaluated by gsplat from the same coefficients.
"""

from __future__ import annotations

import torch

from diff_3d.cameras import Camera
from diff_3d.gaussians import Gaussians

__all__ = ["gsplat_available", "render_gsplat"]


def gsplat_available() -> bool:
    """Whether gsplat can be imported and CUDA is present (it does not import gsplat's kernels)."""
    if not torch.cuda.is_available():
        return False
    import importlib.util

    return importlib.util.find_spec("gsplat") is not None


def render_gsplat(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor,
    *,
    near: float = 0.01,
    eps2d: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render through gsplat (CUDA tensors): rgb (H, W, 3), alpha (H, W), expected depth (H, W)."""
    from gsplat import rasterization

    if gaussians.device.type != "cuda":
        raise ValueError(f"gaussians: the gsplat backend needs CUDA tensors, got device {gaussians.device}")
    g = gaussians
    view = camera.viewmat.to(g.means)[None]
    k = camera.K.to(g.means)[None]
    colors, alphas, _ = rasterization(
        means=g.means,
        quats=g.quats,
        scales=g.scales(),
        opacities=g.opacities(),
        colors=g.sh,
        viewmats=view,
        Ks=k,
        width=camera.width,
        height=camera.height,
        near_plane=near,
        eps2d=eps2d,
        sh_degree=g.sh_degree,
        packed=False,
        backgrounds=background.to(g.means)[None],
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    rgb, depth, alpha = colors[0, ..., :3], colors[0, ..., 3], alphas[0, ..., 0]
    return rgb, alpha, depth
