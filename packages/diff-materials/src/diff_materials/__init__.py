"""Crystal diffusion with property guidance (MatterGen, DiffCSP): crystal structure prediction and ab initio
generation of periodic crystals, on diffcore's Gaussian paths, torus and discrete diffusion.

    from diff_materials import CrystalTrainConfig, CrystalSampleConfig, train, sample
    pipe = train(CrystalTrainConfig(task="gen"))          # the generated perovskites by default
    crystals = sample(pipe, CrystalSampleConfig(num_samples=8, formulas=["SrTiO3"]))
    structure = crystals[0].to_structure()                # pymatgen
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_materials.config import (
    CrystalCSPConfig,
    CrystalEvaluateConfig,
    CrystalModelConfig,
    CrystalSampleConfig,
    CrystalTrainConfig,
)

try:
    __version__ = version("diff-materials")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {
    "CrystalPipeline": "pipeline",
    "evaluate": "pipeline",
    "predict_files": "pipeline",
    "sample": "pipeline",
    "train": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_materials.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_materials' has no attribute {name!r}")


__all__ = [
    "CrystalCSPConfig",
    "CrystalEvaluateConfig",
    "CrystalModelConfig",
    "CrystalPipeline",
    "CrystalSampleConfig",
    "CrystalTrainConfig",
    "__version__",
    "evaluate",
    "predict_files",
    "sample",
    "train",
]
