"""Diffusion on 3D Gaussian splats (DiffGS, L3DG) and score distillation (DreamFusion).

Generative models: DiffGS-style Gaussian functions and L3DG-style voxel grids, each with latent diffusion on
diffcore (:class:`SplatPipeline`, :func:`train`, :func:`sample`, :func:`evaluate`).
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_3d.config import SplatEvaluateConfig, SplatModelConfig, SplatSampleConfig, SplatTrainConfig

try:
    __version__ = version("diff-3d")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {"SplatPipeline": "pipeline", "evaluate": "pipeline", "sample": "pipeline", "train": "pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_3d.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_3d' has no attribute {name!r}")


__all__ = [
    "SplatEvaluateConfig",
    "SplatModelConfig",
    "SplatPipeline",
    "SplatSampleConfig",
    "SplatTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
