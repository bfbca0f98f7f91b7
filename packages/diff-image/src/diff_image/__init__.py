"""Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-image")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
