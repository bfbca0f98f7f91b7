"""Every sampler family, registered by name. ``available()`` lists them; ``diffcore.sample`` runs them.

Each family lives in its own module and registers itself on import.
"""

# ruff: noqa: F401  (the family modules are imported for their registrations)
from diffcore import grids_optimized
from diffcore.samplers import consistency, ddim, ddpm, dpm_solver, euler, ode, sde, unipc
from diffcore.samplers.registry import SamplerSpec, available, get, register

__all__ = ["SamplerSpec", "available", "get", "register"]
