"""Spacetime-patch video diffusion (Sora / Open-Sora / Latte).

``train(config) -> VideoPipeline``, ``sample(pipeline, config)``, ``evaluate(pipeline, config)`` and
``image_to_video(pipeline, config)``; clips are ``(B, C, T, H, W)`` in [-1, 1]; time runs from ``t = 1`` (noise)
to ``t = 0`` (data).
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_video.config import (
    VideoEvaluateConfig,
    VideoI2VConfig,
    VideoModelConfig,
    VideoSampleConfig,
    VideoTrainConfig,
)

try:
    __version__ = version("diff-video")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {
    "VideoPipeline": "pipeline",
    "evaluate": "pipeline",
    "image_to_video": "pipeline",
    "sample": "pipeline",
    "train": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_video.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_video' has no attribute {name!r}")


__all__ = [
    "VideoEvaluateConfig",
    "VideoI2VConfig",
    "VideoModelConfig",
    "VideoPipeline",
    "VideoSampleConfig",
    "VideoTrainConfig",
    "__version__",
    "evaluate",
    "image_to_video",
    "sample",
    "train",
]
