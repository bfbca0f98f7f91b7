"""Text-to-series generation (T2S), forecasting and imputation.

Status: scaffold. The public API below has its final shape; :func:`train`, :func:`sample` and :func:`evaluate`
raise ``NotImplementedError`` until issue #29 lands.
"""

from importlib.metadata import PackageNotFoundError, version

from diff_timeseries.config import (
    SeriesEvaluateConfig,
    SeriesModelConfig,
    SeriesSampleConfig,
    SeriesTrainConfig,
)
from diff_timeseries.pipeline import SeriesPipeline, evaluate, sample, train

try:
    __version__ = version("diff-timeseries")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "SeriesEvaluateConfig",
    "SeriesModelConfig",
    "SeriesPipeline",
    "SeriesSampleConfig",
    "SeriesTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
