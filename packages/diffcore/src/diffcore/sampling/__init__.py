"""Sampling: time grids, every sampler family (registered by name) and :func:`sample`, which runs them.

- :func:`sample`: run any registered sampler on a :class:`~diffcore.paths.Denoiser` with any grid.
- :mod:`~diffcore.sampling.grids`: time grids (uniform, log-SNR, Karras rho, trailing), apart from samplers.
- :mod:`~diffcore.sampling.grid_search`: grids optimised for a sampler and step count.
- :mod:`~diffcore.sampling.steps`: the single steps the samplers are built from.
- one module per family: ``ddim``, ``ddpm``, ``euler`` (Euler, Heun), ``dpm_solver``, ``unipc``,
  ``ode_solvers`` (midpoint, RK4, dopri5), ``sde_solvers`` (Euler-Maruyama, predictor-corrector,
  Langevin), ``consistency``. Each registers itself on import; :func:`available` lists them.
"""

# ruff: noqa: F401  (the family modules are imported for their registrations)
from diffcore.sampling import grids
from diffcore.sampling.registry import SamplerSpec, available, get, register
from diffcore.sampling.sample import sample

from diffcore.sampling import (  # isort: skip  (families register themselves; grid_search registers a grid)
    consistency,
    ddim,
    ddpm,
    dpm_solver,
    euler,
    grid_search,
    ode_solvers,
    sde_solvers,
    unipc,
)

__all__ = ["SamplerSpec", "available", "get", "grids", "register", "sample"]
