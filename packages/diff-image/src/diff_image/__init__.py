"""Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics.

The modality contract (docs/architecture.md): :class:`ImagePipeline` and the verbs

    pipe = train(ImageTrainConfig(...))                  # the run under config.train.output_dir
    images = sample(pipe, ImageSampleConfig(...))         # (N, C, H, W) in [-1, 1]
    metrics = evaluate(pipe, ImageEvaluateConfig(...))    # digits or shapes metrics, name -> value
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_image.config import (
    AutoencoderConfig,
    ImageControlConfig,
    ImageDataConfig,
    ImageEditConfig,
    ImageEvaluateConfig,
    ImageLoraConfig,
    ImageModelConfig,
    ImageSampleConfig,
    ImageTrainConfig,
)

try:
    __version__ = version("diff-image")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {"ImagePipeline": "pipeline", "evaluate": "pipeline", "sample": "pipeline", "train": "pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_image.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_image' has no attribute {name!r}")


__all__ = [
    "AutoencoderConfig",
    "ImageControlConfig",
    "ImageDataConfig",
    "ImageEditConfig",
    "ImageEvaluateConfig",
    "ImageLoraConfig",
    "ImageModelConfig",
    "ImagePipeline",
    "ImageSampleConfig",
    "ImageTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
