"""3D diffusion: Gaussian-splat latents and score distillation, rendered through gsplat."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-3d")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
