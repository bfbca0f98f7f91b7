"""Text-to-series diffusion for time series."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-timeseries")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
