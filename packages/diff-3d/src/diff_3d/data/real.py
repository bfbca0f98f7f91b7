"""Real inputs on local paths: folders of 3DGS PLY files, and folders of multi-view sets (NeRF-synthetic
``transforms.json``) that are fitted to Gaussians here (:mod:`diff_3d.fit`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from diff_3d.cameras import Camera, read_transforms
from diff_3d.config import FitSettings
from diff_3d.gaussians import Gaussians
from diff_3d.io import PlyFolder, read_ply_folder

__all__ = [
    "FittedSet",
    "ViewSet",
    "find_view_sets",
    "load_ply_folder",
    "load_transforms_sets",
    "read_view_sets",
]


def load_ply_folder(folder: str | Path) -> PlyFolder:
    """Every 3DGS ``*.ply`` in ``folder``; unreadable files are listed in ``skipped`` and warned about
    (:func:`diff_3d.io.read_ply_folder`)."""
    return read_ply_folder(folder)


@dataclass
class ViewSet:
    """One multi-view set: its name (the folder's), images (V, H, W, 3) composited on the background, alphas
    (V, H, W) and cameras."""

    name: str
    images: torch.Tensor
    alphas: torch.Tensor
    cameras: list[Camera]


@dataclass
class FittedSet:
    """A multi-view set fitted to Gaussians, with the mean PSNR (dB) of their renders on its views."""

    views: ViewSet
    gaussians: Gaussians
    psnr: float


def find_view_sets(folder: str | Path) -> list[Path]:
    """The multi-view sets in ``folder``: the folder itself if it holds ``transforms.json`` or
    ``transforms_train.json``, else each sub-folder (sorted) that does."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data_path: {root} is not a folder (expected multi-view sets with transforms.json)"
        )

    def has(p: Path) -> bool:
        return (p / "transforms.json").is_file() or (p / "transforms_train.json").is_file()

    if has(root):
        return [root]
    sets = [p for p in sorted(root.iterdir()) if p.is_dir() and has(p)]
    if not sets:
        raise FileNotFoundError(
            f"data_path: no transforms.json or transforms_train.json in {root} or its sub-folders"
        )
    return sets


def read_view_sets(
    folder: str | Path,
    *,
    resolution: int = 0,
    max_views: int = 0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[list[ViewSet], list[tuple[Path, str]]]:
    """Read every set of :func:`find_view_sets` (the ``train`` split where there is one). Returns the sets and
    ``(path, reason)`` of those that could not be read, which are also warned about (never silently dropped).
    ``resolution``: resample to ``resolution x resolution`` (0: as stored; non-square sources are stretched)."""
    sets, skipped = [], []
    for path in find_view_sets(folder):
        try:
            images, alphas, cams = read_transforms(
                path,
                split="train",
                background=background,
                size=(resolution, resolution) if resolution else None,
                max_views=max_views or None,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            skipped.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        sets.append(ViewSet(path.name, images, alphas, cams))
    if skipped:
        names = ", ".join(p.name for p, _ in skipped)
        warnings.warn(f"{folder}: skipped {len(skipped)} unreadable multi-view set(s): {names}", stacklevel=2)
    return sets, skipped


def load_transforms_sets(
    folder: str | Path,
    *,
    num_gaussians: int = 4096,
    extent: float = 1.3,
    settings: FitSettings | None = None,
    resolution: int = 64,
    max_views: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[list[FittedSet], list[tuple[Path, str]]]:
    """Read the multi-view sets in ``folder`` (:func:`read_view_sets`) and fit each with ``num_gaussians``
    Gaussians initialised at random in ``[-extent, extent]^3``. Returns the fitted sets and the skipped ones."""
    from diff_3d.fit import fit_gaussians, random_init

    s = settings or FitSettings()
    views, skipped = read_view_sets(
        folder, resolution=resolution, max_views=max_views, background=s.background
    )
    gen = torch.Generator().manual_seed(seed)
    out = []
    for vs in views:
        init = random_init(num_gaussians, extent, gen).to(device)
        result = fit_gaussians(vs.images, vs.cameras, init, s, generator=gen, extent=extent, progress=progress,
                               desc=f"fit {vs.name}")  # fmt: skip
        out.append(FittedSet(vs, result.gaussians.to("cpu"), float(result.psnr.mean())))
    return out, skipped
