"""Sparse-view completion (after GS-Diff, "Sparse-view 3D Gaussian splatting with diffusion priors"): from a
few real views of an object, the view-conditioned prior (:class:`~diff_3d.prior.ViewPrior`) generates
pseudo-views at other cameras, and Gaussians are fitted (:func:`~diff_3d.fit.fit_gaussians`) to the real views
plus the pseudo-views, the latter with a lower loss weight.

The measurement (:func:`complete_sparse_views`): PSNR on held-out cameras of the fit to (inputs + pseudo-views)
against the fit to the inputs alone, from the same initialisation (Gaussians on a grey sphere of radius 0.5,
nothing of the object's shape). Cameras (:func:`sparse_cameras`): three orbits at one elevation, the inputs
starting at azimuth 0, the pseudo-views half a step of their own spacing further, the held-out views a quarter
of a step of theirs, so no two sets share a camera. Each pseudo-view is generated from the input view nearest
to it in azimuth (one reference view per generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.config import SparseViewSettings
from diff_3d.data.primitives import Primitive, Shape, surface_gaussians
from diff_3d.fit import fit_gaussians
from diff_3d.gaussians import Gaussians
from diff_3d.metrics import psnr
from diff_3d.prior import ViewPrior, camera_angles
from diff_3d.render import render_views
from diff_3d.render.sdf_trace import render_sdf_views

__all__ = [
    "SparseViewResult",
    "complete_sparse_views",
    "generate_pseudo_views",
    "nearest_view",
    "sparse_cameras",
]


def sparse_cameras(
    settings: SparseViewSettings, radius: float, resolution: int
) -> tuple[list[Camera], list[Camera], list[Camera]]:
    """``(inputs, pseudo, held_out)`` orbit cameras (module docstring)."""

    def orbit(n: int, start: float) -> list[Camera]:
        return orbit_cameras(
            n, radius, settings.elevation, width=resolution, height=resolution, start_azimuth=start
        )

    return (
        orbit(settings.input_views, 0.0),
        orbit(settings.pseudo_views, 180.0 / settings.pseudo_views),
        orbit(settings.held_out_views, 90.0 / settings.held_out_views),
    )


def nearest_view(camera: Camera, candidates: Sequence[Camera]) -> int:
    """Index of the candidate camera whose azimuth is nearest ``camera``'s (ties: the first)."""
    _, az = camera_angles(camera)

    def gap(c: Camera) -> float:
        d = abs(camera_angles(c)[1] - az) % (2 * torch.pi)
        return min(d, 2 * torch.pi - d)

    return min(range(len(candidates)), key=lambda i: gap(candidates[i]))


def generate_pseudo_views(
    prior: ViewPrior,
    images: Tensor,
    cameras: Sequence[Camera],
    targets: Sequence[Camera],
    settings: SparseViewSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pseudo-views ``(P, H, W, 3)`` in [0, 1] at ``targets`` from the real ``images`` ``(V, H, W, 3)`` seen by
    ``cameras``: each from its :func:`nearest_view` input."""
    if images.ndim != 4 or images.shape[0] != len(cameras):
        raise ValueError(
            f"images: expected ({len(cameras)}, H, W, 3), one per camera, got {tuple(images.shape)}"
        )
    out: list[Tensor | None] = [None] * len(targets)
    groups: dict[int, list[int]] = {}
    for k, cam in enumerate(targets):
        groups.setdefault(nearest_view(cam, cameras), []).append(k)
    for ref, ks in groups.items():
        views = prior.generate(images[ref], cameras[ref], [targets[k] for k in ks], steps=settings.sample_steps,
                               sampler=settings.sampler, generator=generator)  # fmt: skip
        for k, v in zip(ks, views):
            out[k] = v
    return torch.stack(out)  # type: ignore[arg-type]


@dataclass
class SparseViewResult:
    """One object's sparse-view completion.

    Attributes:
        psnr_inputs_only: mean held-out PSNR (dB) of the fit to the input views alone.
        psnr_with_pseudo: mean held-out PSNR (dB) of the fit to the inputs and the pseudo-views.
        pseudo_psnr: mean PSNR (dB) of the generated pseudo-views against the true renders at their cameras.
        inputs_only: the Gaussians of the first fit; with_pseudo: of the second.
        pseudo_views: ``(P, H, W, 3)`` the generated views; held_out: ``(H', H, W, 3)`` the true held-out views.
    """

    psnr_inputs_only: float
    psnr_with_pseudo: float
    pseudo_psnr: float
    inputs_only: Gaussians
    with_pseudo: Gaussians
    pseudo_views: Tensor
    held_out: Tensor

    @property
    def gain(self) -> float:
        """``psnr_with_pseudo - psnr_inputs_only`` in dB."""
        return self.psnr_with_pseudo - self.psnr_inputs_only


def complete_sparse_views(
    prior: ViewPrior,
    shape: Shape,
    settings: SparseViewSettings | None = None,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> SparseViewResult:
    """Render ``shape``'s input and held-out views (true renders), generate the pseudo-views, fit both ways
    from the same initialisation and score them on the held-out views (module docstring). Runs on the
    prior's device; ``generator`` (CPU) seeds the initialisation, the fits' view order and the sampling."""
    s = settings or SparseViewSettings()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    v = prior.views
    inputs, pseudo_cams, held_cams = sparse_cameras(s, v.radius, v.resolution)
    fit = s.fit if s.fit.background == v.background else _with_background(s, v.background)
    images, _ = render_sdf_views(shape, inputs, v.background)
    held, _ = render_sdf_views(shape, held_cams, v.background)
    pseudo_true, _ = render_sdf_views(shape, pseudo_cams, v.background)
    pseudo = generate_pseudo_views(prior, images, inputs, pseudo_cams, s, gen)
    init = surface_gaussians(Primitive("sphere", "gray"), s.num_gaussians, gen).to(prior.device)
    seed = int(torch.randint(2**31, (1,), generator=gen))
    only = fit_gaussians(images, inputs, init, fit, generator=torch.Generator().manual_seed(seed), progress=progress,
                         desc="fit inputs")  # fmt: skip
    weights = torch.cat([torch.ones(len(inputs)), torch.full((len(pseudo_cams),), s.pseudo_weight)])
    both = fit_gaussians(torch.cat([images, pseudo]), [*inputs, *pseudo_cams], init, fit,
                         generator=torch.Generator().manual_seed(seed), progress=progress, desc="fit +pseudo",
                         view_weights=weights)  # fmt: skip

    def held_psnr(g: Gaussians) -> float:
        with torch.no_grad():
            pred = render_views(g, [c.to(g.device) for c in held_cams], v.background, fit.backend).cpu()  # type: ignore[arg-type]
        return float(psnr(pred.clamp(0, 1), held).mean())

    return SparseViewResult(held_psnr(only.gaussians), held_psnr(both.gaussians), float(psnr(pseudo, pseudo_true).mean()),
                            only.gaussians, both.gaussians, pseudo, held)  # fmt: skip


def _with_background(s: SparseViewSettings, background: tuple[float, float, float]):
    from dataclasses import replace

    return replace(s.fit, background=background)
