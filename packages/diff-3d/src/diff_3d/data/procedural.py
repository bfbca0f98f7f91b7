"""The default procedural set: seeded primitives (kind x colour x size, optionally two stacked), their true
renders (:mod:`diff_3d.render.sdf_trace`) on orbit cameras, fitted to a fixed budget of 3D Gaussians by
:mod:`diff_3d.fit` and cached on disk.

Cache: ``<cache_dir>/procedural-<key>/`` holds ``gaussians.safetensors`` (tensors ``obj<i>.<field>``) and
``meta.json`` (each object's shape, class label, caption and fit PSNR, and the generating settings), written
atomically, ``meta.json`` last. ``key`` hashes everything that decides the result (the number of objects, the
seed, :class:`~diff_3d.config.ProceduralSettings` and :data:`FORMAT`), so changing any of them makes a new
entry and an existing entry is re-used as is. ``cache_dir=None`` uses ``$DIFF_3D_CACHE``, else
``$XDG_CACHE_HOME/diff-3d`` (``~/.cache/diff-3d``); ``cache_dir=False`` does not cache.

Cost: fitting dominates: about a second per 10 steps at 64x64 with 1024 Gaussians and 4 views per step
with the torch renderer on one CPU core; on CUDA with gsplat it is a small fraction of that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from diff_3d.cameras import Camera, orbit_cameras
from diff_3d.config import ProceduralSettings
from diff_3d.data.primitives import KINDS, PALETTE, SIZES, Composite, Primitive, Shape, shape_from_dict
from diff_3d.gaussians import Gaussians

__all__ = [
    "FORMAT",
    "ProceduralObject",
    "default_cache_dir",
    "is_cached",
    "procedural_cameras",
    "procedural_set",
    "procedural_shapes",
    "true_views",
]

FORMAT = 1
"""Version of the cache layout and of the generating code; part of the cache key."""


@dataclass
class ProceduralObject:
    """One object of the set.

    Attributes:
        shape: the analytic primitive or composite.
        gaussians: its fitted Gaussians (CPU, float32; N = ``num_gaussians``).
        psnr: mean PSNR (dB) of their renders against the true renders on the fitting views.
    """

    shape: Shape
    gaussians: Gaussians
    psnr: float

    @property
    def label(self) -> int:
        return self.shape.label

    @property
    def caption(self) -> str:
        return self.shape.caption


def procedural_shapes(num: int, seed: int = 0, compositions: float = 0.0) -> list[Shape]:
    """``num`` shapes drawn from ``seed``: kinds cycle through :data:`KINDS` (so classes are balanced), colour
    and size are drawn; a fraction ``compositions`` of them are one primitive on another (both drawn)."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num: expected an integer >= 1, got {num!r}")
    g = torch.Generator().manual_seed(seed)
    colours, sizes = list(PALETTE), list(SIZES)

    def draw(kind: str) -> Primitive:
        c = colours[int(torch.randint(len(colours), (), generator=g))]
        s = sizes[int(torch.randint(len(sizes), (), generator=g))]
        return Primitive(kind, c, s)

    out: list[Shape] = []
    for i in range(num):
        prim = draw(KINDS[i % len(KINDS)])
        if compositions > 0 and float(torch.rand((), generator=g)) < compositions:
            out.append(Composite.on(prim, draw(KINDS[int(torch.randint(len(KINDS), (), generator=g))])))
        else:
            out.append(prim)
    return out


def procedural_cameras(settings: ProceduralSettings) -> list[Camera]:
    """The fitting views: ``views`` orbit cameras at alternating elevations, evenly spread in azimuth."""
    n, r = settings.views, settings.resolution
    low = orbit_cameras(n, settings.radius, settings.elevations[0], width=r, height=r)
    high = orbit_cameras(n, settings.radius, settings.elevations[1], width=r, height=r)
    return [low[k] if k % 2 == 0 else high[k] for k in range(n)]


def true_views(
    shape: Shape, cameras: list[Camera], background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> torch.Tensor:
    """(V, H, W, 3) true renders (sphere tracing) of ``shape`` from ``cameras``."""
    from diff_3d.render.sdf_trace import render_sdf_views

    return render_sdf_views(shape, cameras, background)[0]


def default_cache_dir() -> Path:
    """``$DIFF_3D_CACHE``, else ``$XDG_CACHE_HOME/diff-3d``, else ``~/.cache/diff-3d``."""
    if os.environ.get("DIFF_3D_CACHE"):
        return Path(os.environ["DIFF_3D_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diff-3d"


def _key(num: int, seed: int, settings: ProceduralSettings) -> str:
    spec = {"format": FORMAT, "num": num, "seed": seed, "settings": dataclasses.asdict(settings)}
    spec["settings"]["fit"].pop("backend", None)  # gsplat and torch fit the same objects
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def is_cached(
    num: int, seed: int = 0, settings: ProceduralSettings | None = None, cache_dir: str | Path | None = None
) -> bool:
    """Whether :func:`procedural_set` would load these objects from the cache instead of fitting them."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir)
    folder = root / f"procedural-{_key(num, seed, settings or ProceduralSettings())}"
    return (folder / "meta.json").is_file() and (folder / "gaussians.safetensors").is_file()


def procedural_set(
    num: int,
    seed: int = 0,
    settings: ProceduralSettings | None = None,
    *,
    cache_dir: str | Path | bool | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[ProceduralObject]:
    """The ``num`` objects of the procedural set drawn from ``seed``, fitted (module docstring), from the
    cache when present. ``device``: where fitting runs (``cuda`` uses gsplat when installed)."""
    s = settings or ProceduralSettings()
    folder = None
    if cache_dir is not False:
        root = default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
        folder = root / f"procedural-{_key(num, seed, s)}"
        cached = _load(folder)
        if cached is not None:
            return cached
    objects = _build(num, seed, s, torch.device(device), progress)
    if folder is not None:
        _save(folder, objects, num, seed, s)
    return objects


def _build(
    num: int, seed: int, s: ProceduralSettings, device: torch.device, progress: bool
) -> list[ProceduralObject]:
    from diffcore.progress import Progress

    from diff_3d.data.primitives import surface_gaussians
    from diff_3d.fit import fit_gaussians

    shapes = procedural_shapes(num, seed, s.compositions)
    cams = procedural_cameras(s)
    gen = torch.Generator().manual_seed(seed + 1)
    out = []
    with Progress(num, "procedural set", show=progress, unit="objects") as bar:
        for shape in shapes:
            images = true_views(shape, cams, s.fit.background)
            init = surface_gaussians(shape, s.num_gaussians, gen).to(device)
            result = fit_gaussians(images, cams, init, s.fit, generator=gen, progress=False)
            out.append(ProceduralObject(shape, result.gaussians.to("cpu"), float(result.psnr.mean())))
            bar.update()
    return out


def _save(folder: Path, objects: list[ProceduralObject], num: int, seed: int, s: ProceduralSettings) -> None:
    from diffcore.io import atomic_path, write_json
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for i, obj in enumerate(objects):
        tensors.update(obj.gaussians.state_dict(f"obj{i}."))
    with atomic_path(folder / "gaussians.safetensors") as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "format": FORMAT,
        "num": num,
        "seed": seed,
        "settings": dataclasses.asdict(s),
        "objects": [
            {"shape": o.shape.to_dict(), "label": o.label, "caption": o.caption, "psnr": o.psnr}
            for o in objects
        ],
    }
    write_json(meta, folder / "meta.json")


def _load(folder: Path) -> list[ProceduralObject] | None:
    """The cached objects, or None when the entry is missing or incomplete (then it is rebuilt)."""
    meta_path, tensor_path = folder / "meta.json", folder / "gaussians.safetensors"
    if not (meta_path.is_file() and tensor_path.is_file()):
        return None
    from safetensors.torch import load_file

    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensor_path))
        return [
            ProceduralObject(
                shape_from_dict(o["shape"]), Gaussians.from_state_dict(tensors, f"obj{i}."), float(o["psnr"])
            )
            for i, o in enumerate(meta["objects"])
        ]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
