"""``CrystalPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`.

Status: scaffold; each verb raises ``NotImplementedError`` until issue #28 lands.
"""

from __future__ import annotations

from typing import Any

import torch
from diffcore.pipeline import Pipeline

from diff_materials.config import CrystalEvaluateConfig, CrystalSampleConfig, CrystalTrainConfig

__all__ = ["CrystalPipeline", "evaluate", "sample", "train"]

_NOT_YET = "diff-materials: {what} is not implemented yet (issue #28)"


class CrystalPipeline(Pipeline):
    """A trained materials model with what it needs to sample (crystal structures (lattice, fractional coordinates, atom types))."""


def train(config: CrystalTrainConfig) -> CrystalPipeline:
    """Train a model as ``config`` says; write the run under ``config.train.output_dir``."""
    raise NotImplementedError(_NOT_YET.format(what="training"))


def sample(
    pipeline: CrystalPipeline, config: CrystalSampleConfig, *, generator: torch.Generator | None = None
) -> Any:
    """Draw ``config.num_samples`` samples (crystal structures (lattice, fractional coordinates, atom types))."""
    raise NotImplementedError(_NOT_YET.format(what="sampling"))


def evaluate(pipeline: CrystalPipeline, config: CrystalEvaluateConfig) -> dict[str, float]:
    """Score the pipeline with the field's metrics; returns metric name -> value."""
    raise NotImplementedError(_NOT_YET.format(what="evaluation"))
