"""Text-to-series generation (T2S), probabilistic forecasting and imputation of time series.

``train`` fits a length-adaptive VAE, a caption-conditioned flow-matching MMDiT over its latents and a
data-space DiT prior; ``sample`` generates series of any length from captions; ``forecast`` and ``impute``
fill unobserved points with the prior (the observed ones held); ``evaluate`` scores all of it. Series are
``(B, C, L)``; time ``t`` in [0, 1] with 0 = data, 1 = noise; the networks predict the velocity ``eps - x0``.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_timeseries.config import (
    SeriesDataConfig,
    SeriesEvaluateConfig,
    SeriesForecastConfig,
    SeriesImputeConfig,
    SeriesModelConfig,
    SeriesSampleConfig,
    SeriesTrainConfig,
)

try:
    __version__ = version("diff-timeseries")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {
    "SeriesPipeline": "pipeline",
    "evaluate": "pipeline",
    "forecast": "pipeline",
    "impute": "pipeline",
    "sample": "pipeline",
    "train": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_timeseries.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_timeseries' has no attribute {name!r}")


__all__ = [
    "SeriesDataConfig",
    "SeriesEvaluateConfig",
    "SeriesForecastConfig",
    "SeriesImputeConfig",
    "SeriesModelConfig",
    "SeriesPipeline",
    "SeriesSampleConfig",
    "SeriesTrainConfig",
    "__version__",
    "evaluate",
    "forecast",
    "impute",
    "sample",
    "train",
]
