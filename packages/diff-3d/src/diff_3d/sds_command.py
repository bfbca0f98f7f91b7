"""``diffuse 3d sds``: distil one object from a prompt and write it with its renders and scores."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json

from diff_3d.cameras import orbit_cameras
from diff_3d.config import SplatSDSConfig
from diff_3d.io import write_gif, write_grid, write_ply
from diff_3d.prior import Prior2D
from diff_3d.render import render_views
from diff_3d.render.sdf_trace import render_sdf_views
from diff_3d.sds import evaluate_object, optimise_sds

__all__ = ["run_sds"]


def run_sds(config: SplatSDSConfig) -> dict[str, Any]:
    """Load the prior, distil ``config.prompt``, write ``object.ply``, ``turntable.gif``, ``views.png`` and
    ``metrics.json`` into ``config.output_dir``; returns the metrics."""
    if not config.prior:
        raise ValueError("prior: expected the folder of a trained prior (--prior runs/3d-prior/prior)")
    if not Path(config.prior).is_dir():
        raise FileNotFoundError(f"prior: no folder {config.prior}")
    device = resolve_device(config.device)
    prior = Prior2D.from_pretrained(config.prior, device)
    label = prior.label(config.prompt)  # a prompt the prior cannot name fails before any work
    gen = torch.Generator().manual_seed(config.seed)
    result = optimise_sds(prior, label, config.sds, generator=gen)
    out = Path(config.output_dir)
    write_ply(result.gaussians.to("cpu"), out / "object.ply")
    v = prior.views
    cams = orbit_cameras(config.turntable_frames, v.radius, 20.0, width=v.resolution, height=v.resolution)
    with torch.no_grad():
        frames = render_views(
            result.gaussians, [c.to(device) for c in cams], v.background, config.sds.backend
        )
    write_gif(out / "turntable.gif", frames.cpu(), scale=4)
    shape = prior.classes[label]
    few = cams[:: max(1, len(cams) // 8)][:8]
    truth, _ = render_sdf_views(shape, few, v.background)
    write_grid(out / "views.png", [list(frames.cpu()[:: max(1, len(cams) // 8)][:8]), list(truth)], scale=2)
    metrics = evaluate_object(
        prior, result.gaussians, shape, generator=torch.Generator().manual_seed(config.seed)
    )
    metrics.update(prompt=config.prompt, label=label, shape=shape.to_dict(), settings=asdict(config.sds))
    write_json(metrics, out / "metrics.json")
    return metrics
