"""The sampler registry: every sampler family registers here by name.

A sampler is a plain function with one shared signature (the k-diffusion habit)::

    @register("euler", description="Euler on the probability-flow ODE")
    def sample_euler(denoiser, x, grid, *, cond, generator, callback, **options) -> Tensor

- ``denoiser``: a :class:`~diffcore.paths.denoiser.DenoiserBase` (guidance, if any, already wrapped around it);
  samplers call its ``estimate(x, t, **cond)`` and write their update through the returned
  :class:`~diffcore.paths.denoiser.Estimate`, and share :mod:`~diffcore.sampling.steps`;
- ``x``: the starting state at ``grid[0]`` (``(B, ...)``, already scaled: ``sigma(t_0) * noise``);
- ``grid``: float64 CPU tensor of times, strictly decreasing from ``grid[0]`` to ``grid[-1]``
  (``t = 0`` is data). Samplers read it with ``grid.tolist()`` once, so per-step coefficients are
  python floats: no host-device synchronisation inside the loop;
- ``cond``: keyword arguments passed to every network call;
- ``generator``: a ``torch.Generator`` for stochastic samplers (on ``x``'s device);
- ``callback(i, t, x, x0)``: called after step ``i`` with the new state and the current ``x0`` estimate.

Samplers keep no state between calls. A step that lands on ``t = 0`` returns the ``x0`` estimate at its start
(:attr:`~diffcore.sampling.steps.GridPoint.is_data`, the one last-step rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase
from diffcore.registry import Registry

Callback = Callable[[int, float, Tensor, Tensor], None]


class SamplerFn(Protocol):
    """The signature every registered sampler has:
    ``(denoiser, x, grid, *, cond, generator, callback, **options) -> x`` at ``grid[-1]``; ``grid`` holds
    decreasing times (``t = 0`` data)."""

    def __call__(
        self,
        denoiser: DenoiserBase,
        x: Tensor,
        grid: Tensor,
        *,
        cond: dict[str, Any],
        generator: Any,
        callback: Callback | None,
        **options: Any,
    ) -> Tensor: ...


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    name: registry name; fn: the sampler; stochastic: whether it draws fresh noise;
    nfe_per_step: network evaluations per grid interval (Heun: 2, RK4: 4, multistep: 1);
    default_grid: the grid used when the caller names none; description: one line for listings.
    """

    name: str
    fn: SamplerFn
    stochastic: bool = False
    nfe_per_step: int = 1
    default_grid: str = "uniform"
    description: str = ""


SAMPLERS: Registry[SamplerSpec] = Registry("sampler")


def register(
    name: str,
    *,
    stochastic: bool = False,
    nfe_per_step: int = 1,
    default_grid: str = "uniform",
    description: str = "",
) -> Callable[[SamplerFn], SamplerFn]:
    """Decorator registering a sampler function under ``name``."""

    def wrap(fn: SamplerFn) -> SamplerFn:
        SAMPLERS.add(name, SamplerSpec(name, fn, stochastic, nfe_per_step, default_grid, description))
        return fn

    return wrap


def available() -> list[str]:
    """Names of every registered sampler."""
    return SAMPLERS.names()


def get(name: str) -> SamplerSpec:
    """The sampler registered as ``name``."""
    return SAMPLERS.get(name)
