"""The contract between ``diffcore`` and the modality packages.

A modality package registers one :class:`Modality` under the entry-point group
``diffcore.modalities``; installing the package is all it takes for ``diffuse`` to find it::

    [project.entry-points."diffcore.modalities"]
    audio = "diff_audio.cli:modality"
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ENTRY_POINT_GROUP = "diffcore.modalities"

BenchStatus = Literal["ok", "not-implemented", "failed"]


@dataclass
class BenchResult:
    """What one modality's benchmark did.

    ``files`` are paths relative to the report folder (pictures, audio, structures, metrics JSON).
    """

    modality: str
    status: BenchStatus
    summary: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BenchFn = Callable[[Path, bool], BenchResult]
"""``bench(out_dir, quick) -> BenchResult``: write everything under ``out_dir``."""


@dataclass(frozen=True)
class Modality:
    """A modality package's registration.

    name: the subcommand name (``diffuse <name> ...``).
    description: one line for ``diffuse list`` and ``--help``.
    app: a ``typer.Typer`` with the package's subcommands (train, sample, evaluate, ...), or None.
    bench: the benchmark ``diffuse bench`` runs, or None when the package has none yet.
    """

    name: str
    description: str
    app: Any = None
    bench: BenchFn | None = None


@dataclass(frozen=True)
class InstalledModality:
    """A discovered modality together with the distribution that provides it.

    package: the import name of the package (``diff_image``), from the entry point's module.
    """

    modality: Modality
    distribution: str
    version: str
    package: str = ""


def not_implemented_bench(name: str, what: str) -> BenchFn:
    """A benchmark that says honestly that the package's benchmark is not written yet."""

    def bench(out_dir: Path, quick: bool) -> BenchResult:
        return BenchResult(modality=name, status="not-implemented", summary=f"not implemented yet: {what}")

    return bench


def discover() -> dict[str, InstalledModality]:
    """Every installed modality, by name, found through the ``diffcore.modalities`` entry points.

    A package whose entry point fails to load raises: a broken install should be loud.
    """
    found: dict[str, InstalledModality] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if not isinstance(obj, Modality):
            raise TypeError(
                f"entry point {ep.name!r} ({ep.value}) must point to a diffcore.modality.Modality, "
                f"got {type(obj).__name__}"
            )
        dist = ep.dist
        found[obj.name] = InstalledModality(
            modality=obj,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            package=ep.module.partition(".")[0],
        )
    return dict(sorted(found.items()))
