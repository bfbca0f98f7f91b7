"""diffcore: the shared core of the diffusion monorepo.

Time convention everywhere: continuous ``t`` in [0, 1], ``t = 0`` is data and ``t = 1`` is noise;
Gaussian paths are ``x_t = alpha(t) * x_0 + sigma(t) * eps``.

    import diffcore
    sched = diffcore.schedules.get("vp-cosine")
    den = diffcore.Denoiser(net, schedule=sched, prediction="eps")
    x0 = diffcore.sample(den, torch.randn(16, 4, 32, 32), sampler="dpmpp_2m", steps=10)
"""

from importlib.metadata import PackageNotFoundError, version

from diffcore import (
    analytic,
    grids,
    guidance,
    inverse,
    likelihood,
    objectives,
    predictions,
    samplers,
    schedules,
    sde,
    timesteps,
    weighting,
)
from diffcore.denoiser import Denoiser, DenoiserBase
from diffcore.sampling import sample

try:
    __version__ = version("diffcore")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "Denoiser",
    "DenoiserBase",
    "__version__",
    "analytic",
    "grids",
    "guidance",
    "inverse",
    "likelihood",
    "objectives",
    "predictions",
    "sample",
    "samplers",
    "schedules",
    "sde",
    "timesteps",
    "weighting",
]
