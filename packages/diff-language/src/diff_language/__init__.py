"""Block diffusion language models (BD3-LM, Arriola et al. 2025) on diffcore's masked discrete diffusion.

Block size ``L' = 1`` is exactly an autoregressive model, ``L' = L`` exactly MDLM; everything between is BD3-LM::

    from diff_language import LanguageSampleConfig, LanguageTrainConfig, sample, train

    pipe = train(LanguageTrainConfig())            # writes runs/language/{pipeline, metrics.json, ...}
    texts = sample(pipe, LanguageSampleConfig(prompt="s3 s1", num_tokens=64))
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_language.config import (
    CorpusConfig,
    LanguageEvaluateConfig,
    LanguageModelConfig,
    LanguageSampleConfig,
    LanguageTrainConfig,
    SamplingConfig,
)

try:
    __version__ = version("diff-language")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load model code (and tokenizers) on first use, so that importing the command line
# (diff_language.cli, which reads only diff_language.config) stays light.
_LAZY = {"LanguagePipeline": "pipeline", "evaluate": "pipeline", "sample": "pipeline", "train": "pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_language.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_language' has no attribute {name!r}")


__all__ = [
    "CorpusConfig",
    "LanguageEvaluateConfig",
    "LanguageModelConfig",
    "LanguagePipeline",
    "LanguageSampleConfig",
    "LanguageTrainConfig",
    "SamplingConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
