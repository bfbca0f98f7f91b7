"""Drawing splat objects from a :class:`~diff_3d.pipeline.core.SplatPipeline` and writing them: one PLY per object,
a PNG grid of renders (one row per object, four views) and a turntable GIF per object."""

from __future__ import annotations

from pathlib import Path

import torch
from diffcore.device import resolve_device
from diffcore.rng import make_generator

from diff_3d.config import SplatSampleConfig
from diff_3d.gaussians import Gaussians
from diff_3d.pipeline.core import SplatPipeline

__all__ = ["sample", "write_samples"]

TURNTABLE_FRAMES = 24


def write_samples(
    objects: list[Gaussians],
    out: Path,
    *,
    image_size: int = 96,
    turntable: bool = True,
    extent: float = 1.0,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Write ``objects`` under ``out``: ``sample_<i>.ply``, ``grid.png`` and (``turntable``) ``turntable_<i>.gif``
    (and ``.mp4`` when PyAV is installed). Returns the files written."""  # fmt: skip
    from diff_3d.io import write_grid, write_ply, write_turntable
    from diff_3d.views import render_views, turntable_cameras, view_cameras

    out.mkdir(parents=True, exist_ok=True)
    written = [write_ply(g, out / f"sample_{i:03d}.ply") for i, g in enumerate(objects)]
    views = render_views(objects, view_cameras(4, image_size, extent), device)
    written.append(write_grid(out / "grid.png", views))
    if turntable:
        cams = turntable_cameras(TURNTABLE_FRAMES, image_size, extent)
        for i, g in enumerate(objects):
            frames = render_views([g], cams, device)[0]
            written += write_turntable(out / f"turntable_{i:03d}", frames, fps=12)
    return [Path(p) for p in written]


def sample(
    pipeline: SplatPipeline,
    config: SplatSampleConfig,
    *,
    generator: torch.Generator | None = None,
    out: str | Path | None = None,
) -> list[Gaussians]:
    """Draw ``config.num_samples`` objects (:meth:`SplatPipeline.generate`) as
    :class:`~diff_3d.gaussians.Gaussians`; with ``out``, also write them there (:func:`write_samples`).
    ``generator`` (default: one seeded with ``config.seed`` on the pipeline's device) seeds noise and extraction."""
    pipeline.to(resolve_device(config.device))
    gen = generator if generator is not None else make_generator(config.seed, pipeline.device)
    objects = pipeline.generate(
        config.num_samples, classes=config.classes or None, prompts=config.prompts or None, guidance=config.guidance,
        sampler=config.sampler, steps=config.steps, budget=config.budget, generator=gen, batch_size=config.batch_size,
    )  # fmt: skip
    if out is not None:
        extent = float(pipeline.data.get("extent", 1.0))
        write_samples(objects, Path(out), image_size=config.image_size, turntable=config.turntable, extent=extent,
                      device=pipeline.device)  # fmt: skip
    return objects
