"""``AudioPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`.

Status: scaffold; each verb raises ``NotImplementedError`` until issue #26 lands.
"""

from __future__ import annotations

from typing import Any

import torch
from diffcore.pipeline import Pipeline

from diff_audio.config import AudioEvaluateConfig, AudioSampleConfig, AudioTrainConfig

__all__ = ["AudioPipeline", "evaluate", "sample", "train"]

_NOT_YET = "diff-audio: {what} is not implemented yet (issue #26)"


class AudioPipeline(Pipeline):
    """A trained audio model with what it needs to sample (waveforms (B, channels, samples) in [-1, 1])."""


def train(config: AudioTrainConfig) -> AudioPipeline:
    """Train a model as ``config`` says; write the run under ``config.train.output_dir``."""
    raise NotImplementedError(_NOT_YET.format(what="training"))


def sample(
    pipeline: AudioPipeline, config: AudioSampleConfig, *, generator: torch.Generator | None = None
) -> Any:
    """Draw ``config.num_samples`` samples (waveforms (B, channels, samples) in [-1, 1])."""
    raise NotImplementedError(_NOT_YET.format(what="sampling"))


def evaluate(pipeline: AudioPipeline, config: AudioEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics; returns metric name -> value."""
    raise NotImplementedError(_NOT_YET.format(what="evaluation"))
