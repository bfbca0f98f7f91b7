"""Diffusion on 3D Gaussian splats (DiffGS, L3DG) and score distillation (DreamFusion).

Status: scaffold. The public API below has its final shape; :func:`train`, :func:`sample` and :func:`evaluate`
raise ``NotImplementedError`` until issue #27 lands.
"""

from importlib.metadata import PackageNotFoundError, version

from diff_3d.config import SplatEvaluateConfig, SplatModelConfig, SplatSampleConfig, SplatTrainConfig
from diff_3d.pipeline import SplatPipeline, evaluate, sample, train

try:
    __version__ = version("diff-3d")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

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
