"""Protein diffusion: SE(3) frame diffusion for backbones and taxonomy-conditioned sequences.

    from diff_protein import ProteinTrainConfig, ProteinSampleConfig, ProteinEvaluateConfig, train, sample, evaluate

    pipe = train(ProteinTrainConfig(what="backbone"))          # writes runs/protein (pipeline/ inside)
    samples = sample(pipe, ProteinSampleConfig(num_samples=8, length=80))
    samples.save("samples")                                      # sample_000.pdb, ...
    metrics = evaluate(pipe, ProteinEvaluateConfig())

The configurations are a light import; the pipeline and the verbs (which load torch and the networks) are
imported on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from diff_protein.config import ProteinEvaluateConfig, ProteinSampleConfig, ProteinTrainConfig
from diff_protein.models.configs import (
    FrameDenoiserConfig,
    SequenceDenoiserConfig,
    TaxonomyClassifierConfig,
)

if TYPE_CHECKING:
    from diff_protein.pipeline import ProteinPipeline, ProteinSamples, evaluate, sample, train

try:
    __version__ = version("diff-protein")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

_PIPELINE = ("ProteinPipeline", "ProteinSamples", "evaluate", "sample", "train")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        value = getattr(importlib.import_module("diff_protein.pipeline"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_protein' has no attribute {name!r}")


__all__ = [
    "FrameDenoiserConfig",
    "ProteinEvaluateConfig",
    "ProteinPipeline",
    "ProteinSampleConfig",
    "ProteinSamples",
    "ProteinTrainConfig",
    "SequenceDenoiserConfig",
    "TaxonomyClassifierConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
