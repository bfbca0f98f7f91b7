"""The ``sample`` verb: draw images from a pipeline as an :class:`~diff_image.config.ImageSampleConfig` says."""

from __future__ import annotations

import torch
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from torch import Tensor

from diff_image.config import ImageSampleConfig
from diff_image.pipeline.core import ImagePipeline

__all__ = ["sample"]


def sample(
    pipeline: ImagePipeline, config: ImageSampleConfig, *, generator: torch.Generator | None = None
) -> Tensor:
    """``config.num_samples`` images ``(N, C, H, W)`` in ``[-1, 1]`` (on the pipeline's device).

    The pipeline is moved to ``config.device``. Class labels (``config.labels``) or captions
    (``config.prompts``) cycle over the samples; ``generator`` (on that device) draws the noise, else a
    generator seeded with ``config.seed``, so the same seed gives the same images. With ``config.quantize`` the
    images come from a quantised copy of the pipeline (:meth:`ImagePipeline.quantized`); ``pipeline`` is unchanged.
    """
    pipeline.to(resolve_device(config.device))
    pipeline = pipeline.quantized(config.quantize)
    gen = make_generator(generator if generator is not None else config.seed, pipeline.device)
    return pipeline.sample(
        config.num_samples,
        sampler=config.sampler,
        steps=config.steps,
        guidance=config.guidance,
        y=list(config.labels) or None,
        prompt=list(config.prompts) or None,
        generator=gen,
        batch_size=config.batch_size,
    )
