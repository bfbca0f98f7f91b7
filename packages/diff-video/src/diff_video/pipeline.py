"""``VideoPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`.

Status: scaffold; each verb raises ``NotImplementedError`` until issue #25 lands.
"""

from __future__ import annotations

from typing import Any

import torch
from diffcore.pipeline import Pipeline

from diff_video.config import VideoEvaluateConfig, VideoSampleConfig, VideoTrainConfig

__all__ = ["VideoPipeline", "evaluate", "sample", "train"]

_NOT_YET = "diff-video: {what} is not implemented yet (issue #25)"


class VideoPipeline(Pipeline):
    """A trained video model with what it needs to sample (clips (B, C, T, H, W) in [-1, 1])."""


def train(config: VideoTrainConfig) -> VideoPipeline:
    """Train a model as ``config`` says; write the run under ``config.train.output_dir``."""
    raise NotImplementedError(_NOT_YET.format(what="training"))


def sample(
    pipeline: VideoPipeline, config: VideoSampleConfig, *, generator: torch.Generator | None = None
) -> Any:
    """Draw ``config.num_samples`` samples (clips (B, C, T, H, W) in [-1, 1])."""
    raise NotImplementedError(_NOT_YET.format(what="sampling"))


def evaluate(pipeline: VideoPipeline, config: VideoEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics; returns metric name -> value."""
    raise NotImplementedError(_NOT_YET.format(what="evaluation"))
