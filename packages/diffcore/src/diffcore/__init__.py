"""diffcore: the shared core of the diffusion monorepo.

Time convention everywhere: continuous ``t`` in [0, 1], ``t = 0`` is data and ``t = 1`` is noise;
Gaussian paths are ``x_t = alpha(t) * x_0 + sigma(t) * eps``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffcore")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
