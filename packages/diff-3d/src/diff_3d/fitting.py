"""``diffuse 3d fit``: fit Gaussians to multi-view sets (a folder of ``transforms.json`` sets, or the procedural
objects) and write, under the output folder, ``<name>.ply`` per object, ``renders.png`` (per object a row of
truth views above a row of renders of the fitted Gaussians), ``metrics.json`` (per-object and mean PSNR) and,
when asked, ``<name>_turntable.gif`` / ``.mp4``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.config import SplatFitConfig
from diff_3d.gaussians import Gaussians

__all__ = ["run_fit"]

GRID_VIEWS = 4


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "object"


def run_fit(config: SplatFitConfig, *, progress: bool = True) -> dict[str, object]:
    """Fit every object the configuration names and write the outputs (module docstring); returns the
    metrics written to ``metrics.json``."""
    from diffcore.device import resolve_device
    from diffcore.io import write_json

    from diff_3d.io import write_grid, write_ply
    from diff_3d.render import render_views

    device = resolve_device(config.device)
    out = Path(config.output_dir)
    objects = _fitted_objects(config, device, progress)
    rows, per_object = [], {}
    used: set[str] = set()
    for name, gaussians, images, cameras, psnr in objects:
        stem = name
        k = 1
        while stem in used:
            k += 1
            stem = f"{name}_{k}"
        used.add(stem)
        write_ply(gaussians, out / f"{stem}.ply")
        pick = torch.linspace(0, len(cameras) - 1, min(GRID_VIEWS, len(cameras))).round().long().tolist()
        with torch.no_grad():
            renders = render_views(gaussians.to(device), [cameras[i] for i in pick], config.background).cpu()
        rows += [[images[i] for i in pick], list(renders.clamp(0, 1))]
        if config.turntable:
            _turntable(gaussians.to(device), cameras[0], config, out / f"{stem}_turntable")
        per_object[stem] = psnr
    write_grid(out / "renders.png", rows, scale=2)
    metrics: dict[str, object] = {
        "psnr_mean": sum(per_object.values()) / len(per_object),
        "psnr": per_object,
        "num_objects": len(per_object),
    }
    write_json(metrics, out / "metrics.json")
    return metrics


def _turntable(gaussians: Gaussians, like: Camera, config: SplatFitConfig, path: Path) -> None:
    from diff_3d.io import write_turntable
    from diff_3d.render import render_views

    radius = float(like.position.norm())
    elevation = float(torch.rad2deg(torch.asin(like.position[1] / radius)))
    cams = orbit_cameras(24, radius, elevation, width=like.width, height=like.height, fov_x=like.fov_x)
    with torch.no_grad():
        frames = render_views(gaussians, cams, config.background).cpu().clamp(0, 1)
    write_turntable(path, frames)


def _fitted_objects(
    config: SplatFitConfig, device: torch.device, progress: bool
) -> list[tuple[str, Gaussians, torch.Tensor, list[Camera], float]]:
    """(name, gaussians, true images, cameras, mean PSNR) per object."""
    if config.data_path:
        from diff_3d.data.real import load_transforms_sets

        fitted, _ = load_transforms_sets(
            config.data_path,
            num_gaussians=config.num_gaussians,
            extent=config.extent,
            settings=config.fit,
            resolution=config.resolution,
            max_views=config.max_views,
            seed=config.seed,
            device=device,
            progress=progress,
        )
        if not fitted:
            raise ValueError(f"data_path: none of the multi-view sets in {config.data_path} could be read")
        return [(_slug(f.views.name), f.gaussians, f.views.images, f.views.cameras, f.psnr) for f in fitted]

    from diff_3d.data.procedural import procedural_cameras, procedural_set, true_views

    s = dataclasses.replace(config.procedural, fit=config.fit)  # one optimisation setting per command
    objects = procedural_set(
        config.num_objects,
        config.seed,
        s,
        cache_dir=config.cache_dir or False,
        device=device,
        progress=progress,
    )
    cams = procedural_cameras(s)
    return [
        (_slug(o.caption), o.gaussians, true_views(o.shape, cams, s.fit.background), cams, o.psnr)
        for o in objects
    ]
