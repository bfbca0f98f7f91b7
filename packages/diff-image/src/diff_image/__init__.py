"""Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics.

The modality contract (docs/architecture.md): :class:`ImagePipeline` and the verbs

    pipe = train(ImageTrainConfig(...))                  # the run under config.train.output_dir
    images = sample(pipe, ImageSampleConfig(...))         # (N, C, H, W) in [-1, 1]
    metrics = evaluate(pipe, ImageEvaluateConfig(...))    # digits or shapes metrics, name -> value
"""

from importlib.metadata import PackageNotFoundError, version

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
from diff_image.pipeline import ImagePipeline, evaluate, sample, train

try:
    __version__ = version("diff-image")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

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
