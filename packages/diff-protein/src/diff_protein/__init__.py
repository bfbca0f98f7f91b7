"""Protein diffusion: SE(3) frame diffusion for backbones and taxonomy-conditioned sequences."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-protein")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
