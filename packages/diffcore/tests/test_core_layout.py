"""The core's one-way import rule (docs/architecture.md, "The core, by concern"), read off the source.

Every module of diffcore is parsed with ``ast``; every import counts, also inside functions (a lazy import
is still a dependency). A module may import its own concern and what :data:`MAY_IMPORT` lists for it;
inside ``sampling`` the modules are layered too (:data:`SAMPLING_LAYERS`). A violation is printed as
``module -> imported module``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from diffcore.paths.schedules import get as get_schedule
from diffcore.sampling import grids

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "diffcore"

# The concern of each top-level module of diffcore that is not a folder of its own.
FOUNDATION = ("config", "io", "rng", "device", "progress", "previews", "pretrained", "registry", "_moved")
TOP = ("pipeline", "model_card", "modality", "bench", "cli", "workflows", "ui")
CONCERN_OF = {**dict.fromkeys(FOUNDATION, "foundation"), **dict.fromkeys(TOP, "top")}

# concern -> the other concerns it may import (each may import itself)
MAY_IMPORT: dict[str, set[str]] = {
    "foundation": set(),
    "metrics": {"foundation"},
    "precision": {"foundation"},  # torchao float8 training and quantised inference
    "kernels": {"foundation"},
    "paths": {"foundation"},
    "nn": {"foundation", "kernels"},
    "discrete": {"foundation"},
    "manifolds": {"foundation"},
    "guidance": {"foundation", "paths"},  # never sampling
    "sampling": {"foundation", "paths", "guidance"},  # sample() wraps a denoiser in guidance
    "editing": {"foundation", "paths", "guidance", "sampling"},
    "likelihood": {"foundation", "paths", "guidance", "sampling"},
    "training": {"foundation", "paths", "precision"},  # float8 training (TrainConfig.float8)
    "distill": {"foundation", "kernels", "nn", "paths", "guidance", "sampling", "training"},
    "streaming": {"foundation", "kernels", "paths", "guidance", "sampling", "precision"},
    "alignment": {"foundation", "paths", "guidance", "sampling", "training"},
    "interop": {"foundation", "nn", "paths", "guidance", "sampling"},  # diffusers / PEFT / kohya formats
}
MAY_IMPORT["top"] = set(MAY_IMPORT)

# Inside sampling, a module may import its own layer and the earlier ones in this list: the time grids, the
# per-step arithmetic and the registry, then the sampler families, then sample() that runs them, then the grid
# search that runs sample() many times; the package __init__ gathers them all.
FAMILIES = ("ddim", "ddpm", "euler", "dpm_solver", "unipc", "ode_solvers", "sde_solvers", "consistency")
SAMPLING_LAYERS: list[tuple[str, ...]] = [
    ("grids", "steps", "registry"),
    FAMILIES,
    ("sample",),
    ("grid_search",),
    ("__init__",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _concern(module: str) -> str:
    """``diffcore.paths.denoiser`` -> ``paths``; top-level modules through :data:`CONCERN_OF`."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top"  # the diffcore package itself
    return CONCERN_OF.get(parts[1], parts[1])


def _imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """The diffcore modules ``module`` imports (``from a import b`` means module ``a.b`` when that is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {name for name in found if name == "diffcore" or name.startswith("diffcore.")}


def _sampling_layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["diffcore", "sampling"]:
        return None
    name = parts[2] if len(parts) > 2 else "__init__"
    return next((i for i, layer in enumerate(SAMPLING_LAYERS) if name in layer), None)


def _against_the_rule(module: str, imported: set[str]) -> list[str]:
    found = []
    mine = _concern(module)
    for other in sorted(imported):
        theirs = _concern(other)
        if theirs != mine and theirs not in MAY_IMPORT[mine]:
            found.append(f"{module} -> {other}  ({mine} may not import {theirs})")
        lo, hi = _sampling_layer(module), _sampling_layer(other)
        if lo is not None and hi is not None and hi > lo:
            found.append(f"{module} -> {other}  (runs back up the sampling layers)")
    return found


def test_every_module_has_a_known_place() -> None:
    assert "diffcore.sampling.sample" in MODULES and len(MODULES) > 60
    unknown = sorted({_concern(m) for m in MODULES} - set(MAY_IMPORT))
    assert not unknown, f"concerns missing from MAY_IMPORT: {unknown}"
    sampling = [m for m in MODULES if m.startswith("diffcore.sampling")]
    missing = [m for m in sampling if _sampling_layer(m) is None]
    assert not missing, f"sampling modules missing from SAMPLING_LAYERS: {missing}"


def test_imports_run_one_way_from_the_foundation_up() -> None:
    found = [
        line
        for module, path in MODULES.items()
        for line in _against_the_rule(module, _imports(module, path.read_text(), path.name == "__init__.py"))
    ]
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_the_rule_sees_lazy_and_relative_imports() -> None:
    """A lazy import inside a function, a relative import and a bare ``import`` are all caught."""
    probes = {
        "diffcore.paths.denoiser": ("def f():\n    from diffcore.sampling import sample\n", "paths may not"),
        "diffcore.guidance.wrappers": ("from ..sampling.sample import sample\n", "guidance may not"),
        "diffcore.io": ("import diffcore.paths.schedules\n", "foundation may not"),
        "diffcore.sampling.grids": ("from .grid_search import optimize_grid\n", "runs back up"),
    }
    for module, (source, reason) in probes.items():
        found = _against_the_rule(module, _imports(module, source))
        assert len(found) == 1 and reason in found[0], (module, found)
    assert not _against_the_rule(
        "diffcore.sampling.sample",
        _imports(
            "diffcore.sampling.sample", "from diffcore.guidance.wrappers import ClassifierFreeGuidance\n"
        ),
    )


def test_every_registered_grid_is_a_function_of_the_schedule_alone() -> None:
    """A grid name lives below the samplers: it may not need a model or a sampler to be made (the grid search
    returns a tensor instead of registering a grid that runs samplers)."""
    schedule = get_schedule("vp-linear")
    for name in grids.available():
        grid = grids.make(name, schedule, 4)
        assert grid.dtype == torch.float64 and grid.shape == (5,), name
