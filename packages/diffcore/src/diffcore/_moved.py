"""Old import paths of modules that moved in diffcore 0.2, kept working for one release with a warning.

diffcore 0.2 laid the core out by concern (``paths/``, ``sampling/``, ``guidance/``, ``editing/``,
``training/``). ``import diffcore.schedules`` and ``from diffcore.samplers.ddim import ...`` still work: a
meta-path finder hands back the module at its new home (the same module object, so patching either name
patches both) and raises a :class:`DeprecationWarning` naming the new path. Remove in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# old module path -> new module path
MOVED: dict[str, str] = {
    "diffcore.analytic": "diffcore.paths.analytic",
    "diffcore.denoiser": "diffcore.paths.denoiser",
    "diffcore.predictions": "diffcore.paths.predictions",
    "diffcore.schedules": "diffcore.paths.schedules",
    "diffcore.sde": "diffcore.paths.sde",
    "diffcore.grids": "diffcore.sampling.grids",
    "diffcore.grids_optimized": "diffcore.sampling.grid_search",
    "diffcore.samplers": "diffcore.sampling",
    "diffcore.samplers.registry": "diffcore.sampling.registry",
    "diffcore.samplers.steps": "diffcore.sampling.steps",
    "diffcore.samplers.lambda_steps": "diffcore.sampling.steps",
    "diffcore.samplers.ddim": "diffcore.sampling.ddim",
    "diffcore.samplers.ddpm": "diffcore.sampling.ddpm",
    "diffcore.samplers.euler": "diffcore.sampling.euler",
    "diffcore.samplers.dpm_solver": "diffcore.sampling.dpm_solver",
    "diffcore.samplers.unipc": "diffcore.sampling.unipc",
    "diffcore.samplers.consistency": "diffcore.sampling.consistency",
    "diffcore.samplers.ode": "diffcore.sampling.ode_solvers",
    "diffcore.sampling.lambda_steps": "diffcore.sampling.steps",  # merged into the one steps module
    "diffcore.samplers.sde": "diffcore.sampling.sde_solvers",
    "diffcore.discrete.guidance": "diffcore.guidance.discrete",
    "diffcore.inverse": "diffcore.editing.inpainting",
    "diffcore.inversion": "diffcore.editing.inversion",
    "diffcore.objectives": "diffcore.training.objectives",
    "diffcore.ot": "diffcore.training.ot",
    "diffcore.timesteps": "diffcore.training.time_sampling",
    "diffcore.weighting": "diffcore.training.weighting",
    "diffcore.train": "diffcore.training",
    "diffcore.train.trainer": "diffcore.training.trainer",
    "diffcore.train.config": "diffcore.training.config",
    "diffcore.train.checkpoint": "diffcore.training.checkpoint",
    "diffcore.train.ema": "diffcore.training.ema",
    "diffcore.train.callbacks": "diffcore.training.callbacks",
    "diffcore.train.log_writers": "diffcore.training.log_writers",
    "diffcore.train.lr_schedules": "diffcore.training.lr_schedules",
    # The CUDA-specific code left diffcore.nn for diffcore.kernels (ops only; nn builds on them).
    "diffcore.nn.fused_adaln": "diffcore.kernels.adaln",
    "diffcore.nn.fused_attention": "diffcore.kernels.attention",
    "diffcore.nn._attention_kernels": "diffcore.kernels._attention_triton",
    "diffcore.nn.fused_mlp": "diffcore.kernels.mlp",
    "diffcore.nn.cublaslt": "diffcore.kernels.cublaslt",
    "diffcore.nn._custom_ops": "diffcore.kernels._custom_ops",
    "diffcore.nn.cuda_graphs": "diffcore.kernels.cuda_graphs",
}

# old top-level attribute (``diffcore.schedules`` after ``import diffcore``) -> new module path
MOVED_ATTRIBUTES: dict[str, str] = {
    old.removeprefix("diffcore."): new for old, new in MOVED.items() if old.count(".") == 1
}


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} moved to {new} in diffcore 0.2; the old path will be removed in 0.3",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warn_moved(spec.name, self.new, stacklevel=6)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:  # the module at its new home is already executed
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves the old dotted paths of :data:`MOVED` to the modules at their new homes."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        is_package = any(k.startswith(fullname + ".") for k in MOVED)
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(new), is_package=is_package)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
