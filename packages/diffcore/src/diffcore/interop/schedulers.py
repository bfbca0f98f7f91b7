"""A diffusers ``scheduler_config.json`` as our schedule, prediction, time grid and sampler.

diffusers keeps all four in one stateful scheduler object; here they are the separate, stateless pieces of
diffcore (:mod:`diffcore.paths.schedules`, :mod:`diffcore.paths.predictions`, :mod:`diffcore.sampling.grids`,
the sampler registry). The translation, for the schedulers it covers:

=================================  ==========================  ==========================================
diffusers class                    sampler                     notes
=================================  ==========================  ==========================================
``DDPMScheduler``                  ``ddpm``                    ``variance_type`` fixed_small / fixed_large
``DDIMScheduler``                  ``ddim``                    ``eta = 0``; ``set_alpha_to_one=False`` ends
                                                               at ``t = 1 / T`` instead of 0
``EulerDiscreteScheduler``         ``ddim``                    diffusers' Euler steps ``x / alpha`` in
                                                               ``sigma / alpha``: that is DDIM's update
                                                               (Karras et al. 2022, Sec. 4, "DDIM is Euler");
                                                               its sigmas interpolated between table entries
                                                               become the times of the same noise level
``DPMSolverMultistepScheduler``    ``dpmpp_2m`` / ``dpmpp_3m`` ``algorithm_type="dpmsolver++"``; 3M with
                                                               diffusers' weight of the second difference
``UniPCMultistepScheduler``        ``unipc``                   order, bh1 / bh2, corrector
``FlowMatchEulerDiscreteScheduler``  ``euler``                 rectified flow, ``velocity``; its ``shift``
                                                               warps the grid (SD3's timestep shift)
=================================  ==========================  ==========================================

Time: diffusers' table step ``k = 0..T-1`` holds ``alphas_cumprod[k]``, the noise after ``k + 1`` steps: our
``t = (k + 1) / T`` on a :class:`~diffcore.paths.schedules.DiscreteVP` of the same betas. diffusers starts a VP
run from the noise itself (``x_T = noise``); our :func:`diffcore.sample` starts from ``sigma(t_start) noise``;
:meth:`SchedulerSpec.sample` rescales the noise so the two runs start from the same state. Settings that would
change the result and have no counterpart (Karras sigmas on a DDIM, thresholding, SDE variants ...) are refused
with the setting named.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffcore.io import read_json
from diffcore.paths.denoiser import Denoiser
from diffcore.paths.schedules import DiscreteVP, RectifiedFlow, Schedule, betas_for
from diffcore.sampling import grids
from diffcore.sampling.sample import sample

__all__ = [
    "SCHEDULER_CONFIG_NAME",
    "DiffusersTimestep",
    "SchedulerSpec",
    "read_scheduler_config",
    "scheduler_from_config",
]

SCHEDULER_CONFIG_NAME = "scheduler_config.json"

PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "velocity"}
"""diffusers' ``prediction_type`` -> our prediction name."""


@dataclasses.dataclass
class SchedulerSpec:
    """What a diffusers scheduler configuration means in diffcore.

    Attributes:
        schedule: the noise schedule (a :class:`DiscreteVP` of the config's betas, or rectified flow).
        prediction: what the network predicts (``eps``, ``v``, ``x0`` or ``velocity``).
        sampler: the registered sampler that takes diffusers' steps.
        options: the sampler's options (``solver_type``, ``order``, ...).
        config: the configuration read, for the time grid (:meth:`grid`).
    """

    schedule: Schedule
    prediction: str
    sampler: str
    options: dict[str, Any]
    config: dict[str, Any]

    @property
    def class_name(self) -> str:
        """The diffusers scheduler class the configuration names."""
        return str(self.config["_class_name"])

    def grid(self, steps: int) -> Tensor:
        """The float64 times diffusers' ``set_timesteps(steps)`` visits, then where its last step lands."""
        if steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
        if self.class_name == "FlowMatchEulerDiscreteScheduler":
            return _flow_grid(self.config, steps)
        if self.class_name == "EulerDiscreteScheduler":
            return _euler_grid(self.schedule, self.config, steps)
        return _vp_grid(self.schedule, self.config, steps)

    def denoiser(self, network: Any, diffusers_timesteps: bool = True) -> Denoiser:
        """``network`` (called as ``network(x, t, **cond)`` with ``t`` in [0, 1]) with this schedule and prediction.

        ``diffusers_timesteps``: a network converted from diffusers (it embeds ``1000 t``) is given the timestep
        diffusers gives it: table step ``k`` where our time is ``(k + 1) / T`` (:class:`DiffusersTimestep`);
        without it the network sees ``1000 t``, one table step later. Flow matching needs no shift.
        """
        if diffusers_timesteps and self.class_name != "FlowMatchEulerDiscreteScheduler":
            T = int(self.config.get("num_train_timesteps", 1000))
            network = DiffusersTimestep(network, T)
        return Denoiser(network, self.schedule, self.prediction)

    def start_scale(self, steps: int) -> float:
        """The factor on the noise that makes our start ``sigma(t_0) noise`` equal diffusers' start: ``noise``
        for a VP table, ``sigma_0 noise`` for flow matching (whose ``sigma`` is our ``t``) and for Euler's
        ``linspace`` / ``trailing`` spacings (``init_noise_sigma = sigma_max`` in ``x / alpha`` units)."""
        if self.class_name == "FlowMatchEulerDiscreteScheduler":
            return 1.0
        if self.class_name == "EulerDiscreteScheduler" and self.config.get(
            "timestep_spacing", "linspace"
        ) in (
            "linspace",
            "trailing",
        ):
            return 1.0
        t0 = float(self.grid(steps)[0])
        return 1.0 / float(self.schedule.sigma(torch.tensor(t0, dtype=torch.float64)))

    def sample(self, network_or_denoiser: Any, noise: Tensor, steps: int, **kwargs: Any) -> Tensor:
        """Run :func:`diffcore.sample` the way the diffusers scheduler runs: its grid, its sampler and options,
        its start. ``kwargs`` go to :func:`diffcore.sample` (``cond=``, ``generator=``, ``guidance=`` ...)."""
        den = network_or_denoiser
        if not isinstance(den, Denoiser):
            den = self.denoiser(network_or_denoiser)
        x = noise * self.start_scale(steps)
        return sample(den, x, self.sampler, steps, grid=self.grid(steps), **{**self.options, **kwargs})


class DiffusersTimestep:
    """A network converted from diffusers, called with diffusers' timestep: at our ``t`` it sees
    ``(T t - 1) / 1000`` (it embeds ``1000 t``, so it gets table step ``k = T t - 1``; never below 0).

    Exact on diffusers' integer timesteps (DDPM, DDIM, DPM-Solver, UniPC); Euler's fractional timesteps interpolate
    sigma where our table interpolates ``log alpha_bar``, so there the time input differs slightly.
    """

    def __init__(self, network: Any, num_train_timesteps: int) -> None:
        self.network = network
        self.num_train_timesteps = num_train_timesteps

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """``network(x, (T t - 1) / 1000, **cond)`` for ``x: (B, ...)``, ``t: (B,)`` in [0, 1]."""
        return self.network(x, ((self.num_train_timesteps * t - 1) / 1000).clamp(min=0), **cond)


def read_scheduler_config(path: str | os.PathLike[str]) -> SchedulerSpec:
    """Read ``scheduler_config.json`` (the file, or a folder holding it, such as a pipeline's ``scheduler/``)."""
    file = Path(path)
    if file.is_dir():
        file = file / SCHEDULER_CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"path: {file} does not exist (expected a diffusers {SCHEDULER_CONFIG_NAME})")
    try:
        return scheduler_from_config(read_json(file, "a diffusers scheduler configuration"))
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from exc


def scheduler_from_config(config: dict[str, Any]) -> SchedulerSpec:
    """The :class:`SchedulerSpec` of a diffusers scheduler configuration (the dict of ``scheduler_config.json``)."""
    name = config.get("_class_name")
    makers = {
        "DDPMScheduler": _ddpm, "DDIMScheduler": _ddim, "EulerDiscreteScheduler": _euler,
        "DPMSolverMultistepScheduler": _dpm, "UniPCMultistepScheduler": _unipc,
        "FlowMatchEulerDiscreteScheduler": _flow,
    }  # fmt: skip
    if name not in makers:
        raise ValueError(
            f"_class_name: {name!r} is not a scheduler diffcore reads (supported: {sorted(makers)})"
        )
    cfg = dict(config)
    if name != "FlowMatchEulerDiscreteScheduler":
        _refuse(cfg, thresholding=False, clip_sample=False, use_karras_sigmas=False, use_exponential_sigmas=False,
                use_beta_sigmas=False, timestep_type="discrete")  # fmt: skip
    sampler, options = makers[name](cfg)
    if name == "FlowMatchEulerDiscreteScheduler":
        schedule: Schedule = RectifiedFlow()
        prediction = "velocity"
    else:
        schedule = DiscreteVP(_betas(cfg), name=f"diffusers-{cfg.get('beta_schedule', 'linear')}")
        kind = cfg.get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type: {kind!r} (supported: epsilon, v_prediction, sample)")
        prediction = PREDICTIONS[kind]
    return SchedulerSpec(schedule, prediction, sampler, options, cfg)


# ---------------------------------------------------------------------------------------------- pieces


_DEFAULTS: dict[str, Any] = {
    "clip_sample": True
}  # DDPM / DDIM default to clipping; the others have no such key


def _refuse(cfg: dict[str, Any], **allowed: Any) -> None:
    """Raise naming the first setting of ``cfg`` that differs from the value diffcore reproduces."""
    for key, value in allowed.items():
        if key not in cfg:
            continue
        if cfg[key] != value and not (cfg[key] is None and value is False):
            raise ValueError(f"{key}: {cfg[key]!r} is not reproduced by diffcore (it needs {value!r})")


def _betas(cfg: dict[str, Any]) -> Tensor:
    """diffusers' beta table: ``trained_betas``, ``linear``, ``scaled_linear`` or ``squaredcos_cap_v2``, then the
    zero-terminal-SNR rescaling when asked."""
    T = int(cfg.get("num_train_timesteps", 1000))
    start, end = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
    kind = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas") is not None:
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float64)
    elif kind == "linear":  # no rescaling by 1000 / T, unlike betas_for("linear")
        betas = torch.linspace(start, end, T, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = betas_for("scaled_linear", T, beta_start=start, beta_end=end)
    elif kind == "squaredcos_cap_v2":
        betas = betas_for("cosine", T)
    else:
        raise ValueError(f"beta_schedule: {kind!r} (supported: linear, scaled_linear, squaredcos_cap_v2)")
    if cfg.get("rescale_betas_zero_snr", False):
        betas = _zero_terminal_snr(betas)
    return betas


def _zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale ``sqrt(abar)`` so its last entry is 0, its first unchanged."""
    root = torch.cumprod(1 - betas, 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    abar = root**2
    return 1 - torch.cat([abar[:1], abar[1:] / abar[:-1]])


def _ddpm(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse({**_DEFAULTS, **cfg}, clip_sample=False)
    kinds = {"fixed_small": "small", "fixed_large": "large"}
    variance = cfg.get("variance_type", "fixed_small")
    if variance not in kinds:
        raise ValueError(f"variance_type: {variance!r} (supported: {sorted(kinds)})")
    return "ddpm", {"variance": kinds[variance]}


def _ddim(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse({**_DEFAULTS, **cfg}, clip_sample=False)
    return "ddim", {}


def _euler(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse(cfg, final_sigmas_type="zero", interpolation_type="linear", rescale_betas_zero_snr=False)
    return "ddim", {}


def _dpm(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse(cfg, algorithm_type="dpmsolver++", euler_at_final=False, lambda_min_clipped=-math.inf,
            variance_type=None, use_lu_lambdas=False, lower_order_final=True)  # fmt: skip
    order = int(cfg.get("solver_order", 2))
    solver_type = cfg.get("solver_type", "midpoint")
    if order == 2:
        return "dpmpp_2m", {"solver_type": solver_type}
    if order == 3:
        return "dpmpp_3m", {"d2_weight": "diffusers"}
    raise ValueError(f"solver_order: {order} (supported: 2, 3)")


def _unipc(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse(cfg, predict_x0=True)
    return "unipc", {
        "order": int(cfg.get("solver_order", 2)), "variant": cfg.get("solver_type", "bh2"),
        "use_corrector": not cfg.get("disable_corrector"), "lower_order_final": bool(cfg.get("lower_order_final", True)),
    }  # fmt: skip


def _flow(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _refuse(cfg, use_dynamic_shifting=False, invert_sigmas=False, shift_terminal=None, use_karras_sigmas=False,
            use_exponential_sigmas=False, use_beta_sigmas=False, stochastic_sampling=False)  # fmt: skip
    return "euler", {}


def _end(schedule: Schedule, cfg: dict[str, Any]) -> float:
    """Where the last step lands: ``t = 0`` (``abar = 1``), or the first table entry, ``t = 1 / T``."""
    T = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("_class_name") == "DDIMScheduler" and not cfg.get("set_alpha_to_one", True):
        return 1 / T
    if cfg.get("final_sigmas_type", "zero") == "sigma_min":
        return 1 / T
    return 0.0


def _vp_grid(schedule: Schedule, cfg: dict[str, Any], steps: int) -> Tensor:
    """diffusers' integer timesteps ``k`` (``leading`` / ``trailing`` / ``linspace``) at ``t = (k + 1) / T``."""
    T = int(cfg.get("num_train_timesteps", 1000))
    multistep = cfg.get("_class_name") in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
    spacing = cfg.get("timestep_spacing", "linspace" if multistep else "leading")
    if multistep and spacing in ("linspace", "leading"):
        grid = _multistep_grid(cfg, steps, spacing, T)
    elif spacing == "leading":
        grid = grids.leading(schedule, steps, num_train_steps=T, steps_offset=int(cfg.get("steps_offset", 0)))
    elif spacing == "trailing":
        grid = grids.trailing(schedule, steps, num_train_steps=T)
    elif spacing == "linspace":
        grid = grids.linspace(schedule, steps, num_train_steps=T)
    else:
        raise ValueError(f"timestep_spacing: {spacing!r} (supported: leading, trailing, linspace)")
    grid[-1] = _end(schedule, cfg)
    return grid


def _multistep_grid(cfg: dict[str, Any], steps: int, spacing: str, T: int) -> Tensor:
    """DPM-Solver's and UniPC's spacings in diffusers: ``steps + 1`` points over the table, the last dropped
    (``linspace``: ``round(linspace(0, T - 1, steps + 1))``; ``leading``: multiples of ``T // (steps + 1)``)."""
    if spacing == "linspace":
        k = torch.round(torch.linspace(0, T - 1, steps + 1, dtype=torch.float64)).flip(0)[:-1]
    else:
        k = (torch.arange(steps + 1, dtype=torch.float64) * (T // (steps + 1))).flip(0)[:-1]
        k = k + int(cfg.get("steps_offset", 0))
    return torch.cat([(k + 1) / T, torch.zeros(1, dtype=torch.float64)])


def _euler_grid(schedule: Schedule, cfg: dict[str, Any], steps: int) -> Tensor:
    """diffusers' Euler: timesteps (fractional under ``linspace``), sigma ``sqrt((1 - abar) / abar)`` interpolated
    linearly between table entries, each sigma placed at the time where our schedule has that noise level."""
    T = int(cfg.get("num_train_timesteps", 1000))
    spacing = cfg.get("timestep_spacing", "linspace")
    if spacing == "linspace":
        k = torch.linspace(T - 1, 0, steps, dtype=torch.float64)
    elif spacing == "leading":
        k = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (T // steps) + int(
            cfg.get("steps_offset", 0)
        )
    elif spacing == "trailing":
        k = torch.round(torch.arange(T, 0, -T / steps, dtype=torch.float64)) - 1
    else:
        raise ValueError(f"timestep_spacing: {spacing!r} (supported: leading, trailing, linspace)")
    abar = schedule.alphas_cumprod  # type: ignore[attr-defined]
    table = ((1 - abar) / abar).sqrt()
    lo = k.floor().long().clamp(max=T - 2)
    sig = table[lo] + (k - lo) * (table[lo + 1] - table[lo])
    times = [grids.time_at_log_snr(schedule, -2 * math.log(float(s))) for s in sig]
    return torch.tensor([*times, 0.0], dtype=torch.float64)


def _flow_grid(cfg: dict[str, Any], steps: int) -> Tensor:
    """diffusers' flow matching: ``sigma`` (our ``t``) equally spaced between the shifted table's ends, each
    shifted by ``shift s / (1 + (shift - 1) s)`` (Esser et al. 2024, Sec. 5.3.2), then 0."""
    T = int(cfg.get("num_train_timesteps", 1000))
    shift = float(cfg.get("shift", 1.0))

    def warp(s: Tensor) -> Tensor:
        return shift * s / (1 + (shift - 1) * s)

    s_max, s_min = 1.0, float(warp(torch.tensor(1 / T, dtype=torch.float64)))
    sigmas = warp(torch.linspace(s_max, s_min, steps, dtype=torch.float64))
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
