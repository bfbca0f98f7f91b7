"""Every sampler family, registered by name. ``available()`` lists them; ``diffcore.sample`` runs them.

Each family lives in its own module and registers itself on import.
"""

from diffcore.samplers.registry import SamplerSpec, available, get, register

__all__ = ["SamplerSpec", "available", "get", "register"]
from diffcore.samplers import dpm_solver  # noqa: E402,F401
from diffcore.samplers import unipc  # noqa: E402,F401
from diffcore.samplers import ddim  # noqa: E402,F401
from diffcore.samplers import ddpm  # noqa: E402,F401
from diffcore.samplers import euler  # noqa: E402,F401
from diffcore.samplers import ode  # noqa: E402,F401
from diffcore.samplers import sde  # noqa: E402,F401
from diffcore import grids_optimized  # noqa: E402,F401
from diffcore.samplers import consistency  # noqa: E402,F401
