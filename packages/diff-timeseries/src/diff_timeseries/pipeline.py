"""``SeriesPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`.

Status: scaffold; each verb raises ``NotImplementedError`` until issue #29 lands.
"""

from __future__ import annotations

from typing import Any

import torch
from diffcore.pipeline import Pipeline

from diff_timeseries.config import SeriesEvaluateConfig, SeriesSampleConfig, SeriesTrainConfig

__all__ = ["SeriesPipeline", "evaluate", "sample", "train"]

_NOT_YET = "diff-timeseries: {what} is not implemented yet (issue #29)"


class SeriesPipeline(Pipeline):
    """A trained timeseries model with what it needs to sample (series (B, channels, length))."""


def train(config: SeriesTrainConfig) -> SeriesPipeline:
    """Train a model as ``config`` says; write the run under ``config.train.output_dir``."""
    raise NotImplementedError(_NOT_YET.format(what="training"))


def sample(
    pipeline: SeriesPipeline, config: SeriesSampleConfig, *, generator: torch.Generator | None = None
) -> Any:
    """Draw ``config.num_samples`` samples (series (B, channels, length))."""
    raise NotImplementedError(_NOT_YET.format(what="sampling"))


def evaluate(pipeline: SeriesPipeline, config: SeriesEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics; returns metric name -> value."""
    raise NotImplementedError(_NOT_YET.format(what="evaluation"))
