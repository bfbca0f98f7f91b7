"""Video diffusion with spacetime patches; decord reader with an imageio/PyAV fallback."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-video")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
