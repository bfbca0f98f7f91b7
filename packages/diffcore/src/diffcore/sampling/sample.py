"""``diffcore.sample``: run any registered sampler with any schedule, prediction and grid."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffcore.paths.denoiser import DenoiserBase, scalar_coefficients
from diffcore.sampling import grids as grids_mod
from diffcore.sampling.registry import get as get_sampler


def _wrap_guidance(denoiser: DenoiserBase, guidance: Any, uncond: dict[str, Any] | None) -> DenoiserBase:
    if guidance is None:
        return denoiser
    if isinstance(guidance, (int, float)):
        from diffcore.guidance.wrappers import ClassifierFreeGuidance

        if uncond is None:
            raise ValueError(
                "uncond: classifier-free guidance with a scale needs the unconditional kwargs (uncond=...)"
            )
        return ClassifierFreeGuidance(denoiser, scale=float(guidance), uncond=uncond)
    if callable(guidance) and not isinstance(guidance, DenoiserBase):
        return guidance(denoiser)
    if isinstance(guidance, DenoiserBase):
        return guidance
    raise TypeError(
        f"guidance: expected None, a float scale, a DenoiserBase or a wrapper, got {type(guidance).__name__}"
    )


def sample(
    denoiser: DenoiserBase,
    noise: Tensor,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    *,
    grid: str | Tensor | None = None,
    t_start: float = 1.0,
    t_end: float = 0.0,
    x_start: Tensor | None = None,
    cond: dict[str, Any] | None = None,
    guidance: Any = None,
    uncond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    grid_options: dict[str, Any] | None = None,
    **options: Any,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Draw samples by integrating from ``t_start`` (noise) to ``t_end`` (data).

    Args:
        denoiser: a :class:`~diffcore.paths.denoiser.Denoiser` (any schedule and prediction).
        noise: standard normal noise ``(B, ...)``; the start is ``alpha(t_start) x_start + sigma(t_start) noise``.
        sampler: a registered name (``diffcore.sampling.available()``).
        steps: number of grid intervals (>= 1); network evaluations = steps x the sampler's NFE per step.
        grid: a registered grid name, an explicit decreasing tensor of times, or None for the sampler's default.
        x_start: data to partially noise first (SDEdit); None means pure noise (mean-zero start).
        cond: keyword arguments for every network call (``y=``, ``context=``, ...).
        guidance: a float CFG scale (needs ``uncond``), a guidance wrapper, or None.
        generator: random source for stochastic samplers.
        return_trajectory: also return the list of states after each step (starting state first).
        options: sampler-specific options (``eta``, ``s_churn``, ``order``, ...).

    Returns:
        samples ``(B, ...)`` in ``noise``'s dtype (and the trajectory when asked).
    """
    if not isinstance(noise, Tensor):
        raise TypeError(f"noise: expected a tensor (B, ...), got {type(noise).__name__}")
    if noise.ndim < 1 or noise.shape[0] < 1:
        raise ValueError(f"noise: expected shape (B, ...) with B >= 1, got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise TypeError(f"noise: expected a floating-point tensor, got {noise.dtype}")
    spec = get_sampler(sampler)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if x_start is not None and x_start.shape != noise.shape:
        raise ValueError(
            f"x_start: expected shape {tuple(noise.shape)} (that of noise), got {tuple(x_start.shape)}"
        )
    schedule = denoiser.schedule
    grid = spec.default_grid if grid is None else grid
    times = grids_mod.resolve(grid, schedule, steps, t_start, t_end, **(grid_options or {}))
    den = _wrap_guidance(denoiser, guidance, uncond)

    start = scalar_coefficients(schedule, float(times[0]))
    x = start.sigma * noise
    if x_start is not None:
        x = x + start.alpha * x_start.to(noise.dtype)

    trajectory: list[Tensor] = [x] if return_trajectory else []
    user_callback = options.pop("callback", None)

    def callback(i: int, t: float, x_i: Tensor, x0: Tensor) -> None:
        if return_trajectory:
            trajectory.append(x_i)
        if user_callback is not None:
            user_callback(i, t, x_i, x0)

    out = spec.fn(
        den,
        x,
        times,
        cond=cond or {},
        generator=generator,
        callback=callback if (return_trajectory or user_callback) else None,
        **options,
    )
    return (out, trajectory) if return_trajectory else out
