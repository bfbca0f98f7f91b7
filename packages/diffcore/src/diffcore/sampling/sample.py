"""``diffcore.sample``: run any registered sampler with any schedule, prediction and grid.

Non-finite values (NaN / inf) are refused, not returned: a sampling loop never reads device values (it stays
free of host-device synchronisation and can be captured as one CUDA graph), so :func:`sample` checks the
samples once, after the loop, and raises :class:`NonFiniteError` (a ``ValueError``) that names the cause it
can see from there: non-finite ``noise``, ``x_start`` or conditioning, or else the network / sampler. The debug
mode ``check_finite="step"`` (or the environment variable ``DIFFCORE_CHECK_FINITE=step``) checks after every
step, at one synchronisation each, and names the first step where the values went bad.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
from typing import Any, Literal

import torch
from torch import Tensor

from diffcore import previews as previews_mod
from diffcore import progress as progress_mod
from diffcore.paths.denoiser import DenoiserBase, scalar_coefficients
from diffcore.sampling import grids as grids_mod
from diffcore.sampling.registry import SamplerSpec
from diffcore.sampling.registry import get as get_sampler

__all__ = ["CHECK_FINITE_ENV", "CheckFinite", "NonFiniteError", "sample"]

CheckFinite = Literal["end", "step", "off"]
CHECK_FINITE_MODES: tuple[str, ...] = ("end", "step", "off")
CHECK_FINITE_ENV = "DIFFCORE_CHECK_FINITE"
"""Environment variable giving the default of ``sample(check_finite=...)``: ``end`` (default), ``step``, ``off``."""

SAMPLER_ARGUMENTS = frozenset({"cond", "generator", "callback"})
"""Keyword arguments every sampler function takes from :func:`sample` itself (not user options)."""


class NonFiniteError(ValueError):
    """Sampling produced NaN or inf values.

    Attributes:
        samples: what the sampler returned (with its non-finite values), so nothing computed is lost.
        step: the first step whose state or ``x0`` estimate was non-finite (``check_finite="step"``), else None.
    """

    def __init__(self, message: str, samples: Tensor | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.samples = samples
        self.step = step


def _wrap_guidance(denoiser: DenoiserBase, guidance: Any, uncond: dict[str, Any] | None) -> DenoiserBase:
    if guidance is None:
        return denoiser
    if isinstance(guidance, (int, float)):
        from diffcore.guidance.wrappers import ClassifierFreeGuidance

        if not math.isfinite(guidance):
            raise ValueError(f"guidance: expected a finite guidance scale, got {guidance!r}")

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


@functools.cache
def sampler_options(spec: SamplerSpec) -> tuple[str, ...] | None:
    """The options a sampler takes (its keyword parameters beyond what :func:`sample` passes itself), or None
    when it accepts any (``**options``)."""
    params = inspect.signature(spec.fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(
        p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in SAMPLER_ARGUMENTS
    )


def check_options(spec: SamplerSpec, options: dict[str, Any]) -> None:
    """Raise a TypeError naming an option that neither :func:`sample` nor the sampler ``spec`` takes (rather
    than the internal sampler function's own "unexpected keyword argument")."""
    own = sampler_options(spec)
    if own is None:
        return
    unknown = [k for k in options if k not in own]
    if not unknown:
        return
    public = [p for p in inspect.signature(sample).parameters if p not in ("options", "denoiser", "noise")]
    close = difflib.get_close_matches(unknown[0], [*own, *public], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    takes = ", ".join(own) if own else "no options of its own"
    raise TypeError(
        f"sample() got an unexpected keyword argument {unknown[0]!r}{hint} Sampler {spec.name!r} takes "
        f"{takes}; sample() itself takes {', '.join(public)}"
    )


def check_finite_mode(mode: str | None) -> str:
    """``mode``, or the environment's :data:`CHECK_FINITE_ENV`, or ``"end"``; checked."""
    if mode is None:
        mode = os.environ.get(CHECK_FINITE_ENV, "").strip().lower() or "end"
        where = f"{CHECK_FINITE_ENV} (environment)"
    else:
        where = "check_finite"
    if mode not in CHECK_FINITE_MODES:
        raise ValueError(f"{where}: expected one of {', '.join(CHECK_FINITE_MODES)}, got {mode!r}")
    return mode


def _readable(x: Tensor) -> bool:
    """Whether ``x``'s values may be read now: not on the meta device, not while a CUDA graph is captured."""
    if x.device.type == "meta":
        return False
    return not (x.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def _count_bad(x: Tensor) -> int:
    return int((~torch.isfinite(x)).sum()) if x.is_floating_point() or x.is_complex() else 0


def _bad_inputs(noise: Tensor, x_start: Tensor | None, cond: dict[str, Any]) -> str | None:
    """A sentence naming the first non-finite input of a sampling call, or None when all are finite."""
    named = [("noise", noise), ("x_start", x_start)]
    named += [(f"cond[{k!r}]", v) for k, v in cond.items()]
    for name, value in named:
        if isinstance(value, Tensor) and (bad := _count_bad(value)):
            return f"{name} holds {bad} non-finite (NaN or inf) value(s) of {value.numel()}"
    return None


class _StepCheck:
    """``check_finite="step"``: a sampler callback that raises at the first step whose new state or ``x0``
    estimate holds NaN or inf (one host-device synchronisation per step: a debugging mode)."""

    def __init__(self, sampler: str) -> None:
        self.sampler = sampler
        self.previous_t: float | None = None

    def __call__(self, i: int, t: float, x: Tensor, x0: Tensor) -> None:
        if _readable(x):
            for what, value in (("the x0 estimate", x0), ("the state", x)):
                if bad := _count_bad(value):
                    span = (
                        f"t = {self.previous_t:.6g} -> {t:.6g}"
                        if self.previous_t is not None
                        else f"to t = {t:.6g}"
                    )
                    raise NonFiniteError(
                        f"sampling ({self.sampler}): step {i} ({span}) made {what} non-finite ({bad} NaN or "
                        f"inf value(s) of {value.numel()}) from a finite state: the network (or guidance) "
                        "returned non-finite values there, or the sampler diverged",
                        samples=x,
                        step=i,
                    )
        self.previous_t = t


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
    check_finite: CheckFinite | None = None,
    progress: bool | None = None,
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
        check_finite: ``end`` (default): check the samples once, after the loop, and raise
            :class:`NonFiniteError` naming the cause if any is NaN or inf; ``step``: check after every step and
            name the first bad one (one synchronisation per step, for debugging); ``off``: no check. None takes
            the environment variable ``DIFFCORE_CHECK_FINITE``, else ``end``. Nothing is read while a CUDA
            graph is being captured (a replay's output is the caller's to check).
        progress: show a progress bar over the steps on standard error (plain lines in a log; nothing while a
            CUDA graph is captured). None follows :func:`diffcore.progress.enabled` (on in ``diffuse``
            commands, off in library use); :func:`diffcore.progress.quiet` silences it either way.
        options: sampler-specific options (``eta``, ``s_churn``, ``order``, ...).

    Returns:
        samples ``(B, ...)`` in ``noise``'s dtype (and the trajectory when asked).

    Raises:
        ValueError: a bad argument, or :class:`NonFiniteError` (NaN / inf samples; ``.samples`` holds them).
        TypeError: an option that neither ``sample`` nor the sampler takes.
    """
    if not isinstance(noise, Tensor):
        raise TypeError(f"noise: expected a tensor (B, ...), got {type(noise).__name__}")
    if noise.ndim < 1 or noise.shape[0] < 1:
        raise ValueError(f"noise: expected shape (B, ...) with B >= 1, got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise TypeError(f"noise: expected a floating-point tensor, got {noise.dtype}")
    spec = get_sampler(sampler)
    mode = check_finite_mode(check_finite)
    user_callback = options.pop("callback", None)
    check_options(spec, options)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if x_start is not None and not isinstance(x_start, Tensor):
        raise TypeError(f"x_start: expected a tensor shaped like noise or None, got {type(x_start).__name__}")
    if cond is not None and not isinstance(cond, dict):
        raise TypeError(f"cond: expected a dict of network keyword arguments, got {type(cond).__name__}")
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

    cond = cond or {}
    step_check = _StepCheck(spec.name) if mode == "step" else None
    if step_check is not None and _readable(x) and (cause := _bad_inputs(noise, x_start, cond)):
        raise NonFiniteError(f"sampling ({spec.name}): {cause}; expected finite inputs", samples=None)
    trajectory: list[Tensor] = [x] if return_trajectory else []
    show = progress_mod.enabled() if progress is None else bool(progress)
    bar = progress_mod.Progress(
        len(times) - 1,
        f"sample {spec.name}",
        show=show and _readable(x),
    )
    preview = previews_mod.hook(f"sample {spec.name}", len(times) - 1) if _readable(x) else None

    def callback(i: int, t: float, x_i: Tensor, x0: Tensor) -> None:
        if bar.active:
            bar.update()
        if step_check is not None:
            step_check(i, t, x_i, x0)
        if return_trajectory:
            trajectory.append(x_i)
        if user_callback is not None:
            user_callback(i, t, x_i, x0)
        if preview is not None:
            preview(i, x0)

    out = spec.fn(
        den,
        x,
        times,
        cond=cond,
        generator=generator,
        callback=callback
        if (return_trajectory or user_callback or step_check or bar.active or preview)
        else None,
        **options,
    )
    bar.close()
    if mode != "off" and _readable(out) and (bad := _count_bad(out)):
        cause = _bad_inputs(noise, x_start, cond) or (
            "the inputs were finite, so the network (or guidance) returned non-finite values or the sampler "
            f"diverged; check_finite='step' (or {CHECK_FINITE_ENV}=step) names the first step where they appeared"
        )
        raise NonFiniteError(
            f"sampling ({spec.name}) produced {bad} non-finite (NaN or inf) value(s) of {out.numel()}: {cause}",
            samples=out,
        )
    return (out, trajectory) if return_trajectory else out
