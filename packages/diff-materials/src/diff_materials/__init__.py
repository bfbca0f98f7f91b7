"""Crystal diffusion with property guidance (MatterGen, DiffCSP).

Status: scaffold. The public API below has its final shape; :func:`train`, :func:`sample` and :func:`evaluate`
raise ``NotImplementedError`` until issue #28 lands.
"""

from importlib.metadata import PackageNotFoundError, version

from diff_materials.config import (
    CrystalEvaluateConfig,
    CrystalModelConfig,
    CrystalSampleConfig,
    CrystalTrainConfig,
)
from diff_materials.pipeline import CrystalPipeline, evaluate, sample, train

try:
    __version__ = version("diff-materials")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "CrystalEvaluateConfig",
    "CrystalModelConfig",
    "CrystalPipeline",
    "CrystalSampleConfig",
    "CrystalTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
