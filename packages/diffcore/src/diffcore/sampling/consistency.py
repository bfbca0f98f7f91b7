"""Consistency sampling (Song et al. 2023, Algorithm 1) and LCM's multistep sampling (Luo et al. 2023, Alg. 3).

The denoiser's ``x0`` must be a consistency function ``f(x_t, t)`` (build one with
:meth:`diffcore.distill.ConsistencyParameterization.denoiser`, or any one-step generator wrapped as an
``x0`` predictor). At each grid time ``t_i`` (except the last) the sampler jumps to data,
``x0 = f(x, t_i)``, then re-noises to the next time with fresh noise, ``x = alpha(t_{i+1}) x0 +
sigma(t_{i+1}) z``; landing on ``t = 0`` returns ``x0``. One step (grid ``[1, 0]``) is one-step generation.

``lcm`` is the same chain for latent consistency models with a guidance-scale input: it adds the
per-sample scale ``w`` to the conditioning under ``guidance_key`` (the student was trained on the teacher's
CFG-guided ODE at that scale), so no second, unconditional forward is needed.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, weighted_sum
from diffcore.sampling.registry import Callback, register
from diffcore.sampling.steps import grid_points, randn


@register(
    "consistency",
    stochastic=True,
    description="multistep consistency sampling (Song et al. 2023, Alg. 1): jump to x0, re-noise to the next time",
)
def sample_consistency(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Consistency sampling over ``grid`` (decreasing times, ``t = 0`` data); ``x``: the state at ``grid[0]``.

    Returns the state at ``grid[-1]`` (the last ``x0`` when ``grid[-1] = 0``)."""
    for i, (cur, nxt) in enumerate(itertools.pairwise(grid_points(denoiser.schedule, grid))):
        x0 = denoiser.estimate(x, cur.t, **cond).x0
        x = x0 if nxt.is_data else weighted_sum([(x0, nxt.alpha), (randn(x0, generator), nxt.sigma)])
        if callback is not None:
            callback(i, nxt.t, x, x0)
    return x


@register(
    "lcm",
    stochastic=True,
    description="LCM multistep sampling (Luo et al. 2023, Alg. 3) with the guidance scale fed to the network",
)
def sample_lcm(
    denoiser: DenoiserBase,
    x: Tensor,
    grid: Tensor,
    *,
    cond: dict[str, Any],
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    guidance_scale: float | None = None,
    guidance_key: str = "w",
) -> Tensor:
    """LCM sampling: :func:`sample_consistency` with ``cond[guidance_key] = guidance_scale`` (a ``(B,)``
    tensor). ``guidance_scale=None`` passes the conditioning unchanged (LCM-LoRA students without a
    guidance-scale input)."""
    if guidance_scale is not None:
        if not guidance_scale >= 0:
            raise ValueError(f"guidance_scale: expected >= 0 or None, got {guidance_scale!r}")
        w = torch.full((x.shape[0],), float(guidance_scale), device=x.device, dtype=torch.float32)
        cond = {**cond, guidance_key: w}
    return sample_consistency(denoiser, x, grid, cond=cond, generator=generator, callback=callback)
