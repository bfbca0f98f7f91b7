"""``SplatPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`.

Status: scaffold; each verb raises ``NotImplementedError`` until issue #27 lands.
"""

from __future__ import annotations

from typing import Any

import torch
from diffcore.pipeline import Pipeline

from diff_3d.config import SplatEvaluateConfig, SplatSampleConfig, SplatTrainConfig

__all__ = ["SplatPipeline", "evaluate", "sample", "train"]

_NOT_YET = "diff-3d: {what} is not implemented yet (issue #27)"


class SplatPipeline(Pipeline):
    """A trained 3d model with what it needs to sample (Gaussian splat sets)."""


def train(config: SplatTrainConfig) -> SplatPipeline:
    """Train a model as ``config`` says; write the run under ``config.train.output_dir``."""
    raise NotImplementedError(_NOT_YET.format(what="training"))


def sample(
    pipeline: SplatPipeline, config: SplatSampleConfig, *, generator: torch.Generator | None = None
) -> Any:
    """Draw ``config.num_samples`` samples (Gaussian splat sets)."""
    raise NotImplementedError(_NOT_YET.format(what="sampling"))


def evaluate(pipeline: SplatPipeline, config: SplatEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics; returns metric name -> value."""
    raise NotImplementedError(_NOT_YET.format(what="evaluation"))
