"""Networks: the SE(3)-equivariant IPA frame denoiser and the taxonomy-conditioned sequence transformer.

Their sizes are plain dataclasses in :mod:`diff_protein.models.configs`; the networks (which load torch and
diffcore.nn) are imported on first use, so configurations stay a light import.
"""

from __future__ import annotations

import importlib
from typing import Any

from diff_protein.models.configs import (
    FrameDenoiserConfig,
    SequenceDenoiserConfig,
    TaxonomyClassifierConfig,
)

_LAZY = {
    "FrameDenoiser": "ipa",
    "InvariantPointAttention": "ipa",
    "SequenceDenoiser": "sequence",
    "TaxonomyClassifier": "sequence",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_protein.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_protein.models' has no attribute {name!r}")


__all__ = [
    "FrameDenoiser",
    "FrameDenoiserConfig",
    "InvariantPointAttention",
    "SequenceDenoiser",
    "SequenceDenoiserConfig",
    "TaxonomyClassifier",
    "TaxonomyClassifierConfig",
]
