"""diffcore: the shared core of the diffusion monorepo.

Time convention everywhere: continuous ``t`` in [0, 1], ``t = 0`` is data and ``t = 1`` is noise;
Gaussian paths are ``x_t = alpha(t) * x_0 + sigma(t) * eps``.

    import diffcore
    sched = diffcore.paths.schedules.get("vp-cosine")
    den = diffcore.Denoiser(net, schedule=sched, prediction="eps")
    x0 = diffcore.sample(den, torch.randn(16, 4, 32, 32), sampler="dpmpp_2m", steps=10)

The core is laid out by concern; each folder's ``__init__`` says what it holds:

- ``paths``: schedules, predictions, the :class:`Denoiser`, forward/reverse SDEs, analytic Gaussian mixtures
- ``sampling``: time grids, every sampler family, :func:`sample`
- ``guidance``: classifier-free and classifier guidance as denoiser wrappers
- ``editing``: inpainting / inverse problems, DDIM inversion
- ``likelihood``: exact log-likelihood through the probability-flow ODE
- ``training``: the Trainer, its config, objectives, training-time ``t`` sampling, loss weighting
- ``nn``: backbones (DiT, MMDiT, U-Net), ControlNet, LoRA, text encoders
- ``kernels``: everything CUDA-specific (Triton adaLN and attention, cuBLASLt, custom ops, CUDA graphs)
- ``distill``, ``discrete``, ``manifolds``: few-step students, discrete diffusion, SO(3) and the torus
- ``config``, ``pretrained``, ``pipeline``, ``modality``, ``cli``: configuration files, models and pipelines on
  disk, the contract of the modality packages, the ``diffuse`` command
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from diffcore import _moved

_moved.install()

try:
    __version__ = version("diffcore")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# Everything below loads on first use (PEP 562), so that ``import diffcore`` and the ``diffuse`` command stay
# light: a configuration or ``diffuse --help`` never imports torch.
_SUBPACKAGES = ("editing", "guidance", "likelihood", "paths", "sampling", "training")
_OBJECTS = {
    "Denoiser": "diffcore.paths.denoiser",
    "DenoiserBase": "diffcore.paths.denoiser",
    "sample": "diffcore.sampling.sample",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from diffcore import editing, guidance, likelihood, paths, sampling, training
    from diffcore.paths.denoiser import Denoiser, DenoiserBase
    from diffcore.sampling.sample import sample


def __getattr__(name: str) -> Any:
    """The subpackages and the top-level objects, imported on first use; the pre-0.2 top-level modules
    (``diffcore.schedules``, ...) with a deprecation warning."""
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"diffcore.{name}")
    elif name in _OBJECTS:
        value = getattr(importlib.import_module(_OBJECTS[name]), name)
    elif name in _moved.MOVED_ATTRIBUTES:
        new = _moved.MOVED_ATTRIBUTES[name]
        _moved.warn_moved(f"diffcore.{name}", new)
        return importlib.import_module(new)
    else:
        raise AttributeError(f"module 'diffcore' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Denoiser",
    "DenoiserBase",
    "__version__",
    "editing",
    "guidance",
    "likelihood",
    "paths",
    "sample",
    "sampling",
    "training",
]
