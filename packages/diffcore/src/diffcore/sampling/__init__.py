"""Sampling: time grids, every sampler family (registered by name) and :func:`sample`, which runs them.

- :func:`sample`: run any registered sampler on a :class:`~diffcore.paths.Denoiser` with any grid.
- :mod:`~diffcore.sampling.grids`: time grids (uniform, log-SNR, Karras rho, trailing), apart from samplers.
- :mod:`~diffcore.sampling.grid_search`: grid tensors optimised for a model, a sampler and a step count.
- :mod:`~diffcore.sampling.steps`: what the samplers share: the grid's coefficients, the one DDIM step, the DDPM
  posterior, the exponential integrators' half-log-SNR steps and the one last-step rule.
- one module per family: ``ddim``, ``ddpm``, ``euler`` (Euler, Heun), ``dpm_solver``, ``unipc``,
  ``ode_solvers`` (midpoint, RK4, dopri5), ``sde_solvers`` (Euler-Maruyama, predictor-corrector,
  Langevin), ``consistency``. Each registers itself on import; :func:`available` lists them.
"""

# ruff: noqa: F401  (the family modules are imported for their registrations)
from diffcore.sampling import grids
from diffcore.sampling.registry import SamplerSpec, available, get, register
from diffcore.sampling.sample import sample

from diffcore.sampling import (  # isort: skip  (the families register themselves on import)
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
