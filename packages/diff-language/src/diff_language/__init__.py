"""Block diffusion language models (BD3-LM) on diffcore's masked discrete diffusion."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-language")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
