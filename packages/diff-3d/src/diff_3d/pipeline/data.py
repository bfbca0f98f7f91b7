"""The objects a :class:`~diff_3d.pipeline.core.SplatPipeline` learns from, as fixed-budget feature tensors.

Sources (:func:`build_training_set`):

- ``procedural``: the default set of :mod:`diff_3d.data.procedural` (primitives fitted to 3DGS, cached);
- ``primitives``: Gaussians sampled on analytic primitives' surfaces (:func:`diff_3d.data.primitives.surface_gaussians`,
  no fitting: seconds);
- a folder of 3DGS PLY files (``data_path``): classes from sub-folders, captions from ``captions.json``
  (``{"file.ply": "a caption"}``) or else from the file name.

One object is ``(N, 14)`` (:mod:`diff_3d.models.layout`, the layout of ``Gaussians.to_vector`` at SH degree 0) at a
fixed budget ``N``: a larger set is subsampled, a smaller one repeated (:func:`fixed_budget`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from diff_3d.gaussians import Gaussians
from diff_3d.models.layout import FEATURES

__all__ = [
    "SplatSet",
    "TensorDictDataset",
    "build_training_set",
    "features_to_gaussians",
    "fixed_budget",
    "folder_set",
    "generated_set",
    "primitive_shapes",
]


@dataclass
class SplatSet:
    """Objects as features ``(M, N, 14)`` with labels ``(M,)`` (``-1``: none), captions, class names, and for
    a generated set the shapes (:class:`~diff_3d.data.primitives.Primitive` / ``Composite``) they were made from."""

    features: Tensor
    labels: Tensor
    captions: list[str]
    class_names: list[str]
    shapes: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return self.features.shape[0]


class TensorDictDataset(Dataset):
    """Rows of equally long tensors as ``{"x": ..., <key>: ...}`` dicts (what diffcore's objectives read)."""

    def __init__(self, **tensors: Tensor) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors: expected equally long tensors, got lengths {sorted(sizes)}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def fixed_budget(gaussians: Gaussians, budget: int, generator: torch.Generator | None = None) -> Tensor:
    """``(budget, 14)`` features of ``gaussians``: a random subset when it has more, all of them plus random
    repeats when it has fewer (a repeated Gaussian renders as one of twice the opacity's weight, close enough
    for training)."""
    if budget < 1:
        raise ValueError(f"budget: expected >= 1 Gaussians, got {budget}")
    rows = gaussians.with_sh_degree(0).to_vector().float()
    n = rows.shape[0]
    if n == 0:
        raise ValueError("gaussians: an object with no Gaussians cannot be used")
    if n >= budget:
        idx = torch.randperm(n, generator=generator)[:budget]
    else:
        idx = torch.cat([torch.arange(n), torch.randint(0, n, (budget - n,), generator=generator)])
    return rows[idx]


def features_to_gaussians(features: Tensor) -> Gaussians:
    """One object's features ``(n, 14)`` -> :class:`~diff_3d.gaussians.Gaussians` at SH degree 0."""
    if features.ndim != 2 or features.shape[1] != FEATURES:
        raise ValueError(f"features: expected (n, {FEATURES}), got {tuple(features.shape)}")
    return Gaussians.from_vector(features.detach().float().contiguous(), sh_degree=0)


def primitive_shapes(num: int, seed: int) -> list[Any]:
    """``num`` lone primitives, kinds in turn (so every class is equally frequent), colours and sizes drawn
    from ``seed``."""
    from diff_3d.data.primitives import KINDS, PALETTE, SIZES, Primitive

    g = torch.Generator().manual_seed(seed)
    colours, sizes = list(PALETTE), ["medium", "large"]
    assert all(s in SIZES for s in sizes)
    out = []
    for i in range(num):
        c = colours[int(torch.randint(len(colours), (), generator=g))]
        s = sizes[int(torch.randint(len(sizes), (), generator=g))]
        out.append(Primitive(KINDS[i % len(KINDS)], c, s))
    return out


def generated_set(dataset: str, num: int, budget: int, seed: int, device: str = "cpu") -> SplatSet:
    """``num`` objects of the generated ``dataset`` (``procedural`` or ``primitives``) drawn from ``seed``
    (``device``: where the procedural set is fitted when it is not cached yet)."""
    from diff_3d.data.primitives import class_names

    if dataset == "primitives":
        from diff_3d.data.primitives import surface_gaussians

        shapes = primitive_shapes(num, seed)
        g = torch.Generator().manual_seed(seed + 1)
        objects = [surface_gaussians(s, budget, g) for s in shapes]
    elif dataset == "procedural":
        shapes, objects = _procedural(num, seed, budget, device)
    else:
        raise ValueError(f"dataset: expected procedural or primitives, got {dataset!r}")
    g = torch.Generator().manual_seed(seed + 2)
    features = torch.stack([fixed_budget(o, budget, g) for o in objects])
    labels = torch.tensor([s.label for s in shapes], dtype=torch.long)
    names = class_names(compositions=bool(labels.numel()) and int(labels.max()) >= 6)
    return SplatSet(features, labels, [s.caption for s in shapes], names, shapes)


def _procedural(num: int, seed: int, budget: int, device: str) -> tuple[list[Any], list[Gaussians]]:
    """The procedural set's shapes and Gaussians fitted at ``budget`` (:func:`diff_3d.data.procedural.procedural_set`,
    cached)."""
    from diff_3d.config import ProceduralSettings
    from diff_3d.data.procedural import procedural_set

    items = procedural_set(num, seed=seed, settings=ProceduralSettings(num_gaussians=budget), device=device)
    return [it.shape for it in items], [it.gaussians for it in items]


def folder_set(path: str | Path, budget: int, seed: int = 0) -> SplatSet:
    """Every ``*.ply`` under ``path`` (3DGS PLY files): a class per sub-folder (when there are sub-folders),
    captions from ``captions.json`` (file name relative to ``path`` -> caption) or else the file's stem."""
    from diff_3d.io import read_ply

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"data_path: {root} is not a folder")
    files = sorted(root.rglob("*.ply"))
    if not files:
        raise ValueError(f"data_path: {root} holds no .ply files")
    captions_file = root / "captions.json"
    given = json.loads(captions_file.read_text()) if captions_file.is_file() else {}
    folders = sorted({f.parent.relative_to(root).as_posix() for f in files} - {"."})
    g = torch.Generator().manual_seed(seed)
    features, labels, captions = [], [], []
    for f in files:
        rel = f.relative_to(root).as_posix()
        features.append(fixed_budget(read_ply(f), budget, g))
        parent = f.parent.relative_to(root).as_posix()
        labels.append(folders.index(parent) if parent in folders else -1)
        captions.append(str(given.get(rel, f.stem.replace("_", " "))))
    return SplatSet(torch.stack(features), torch.tensor(labels), captions, folders)


def build_training_set(config: Any) -> SplatSet:
    """The training objects of a :class:`~diff_3d.config.SplatTrainConfig`: its folder or generated set."""
    if config.data_path:
        return folder_set(config.data_path, config.budget, config.data_seed)
    from diffcore.device import resolve_device

    device = str(resolve_device(config.train.device))
    return generated_set(config.dataset, config.num_objects, config.budget, config.data_seed, device)
