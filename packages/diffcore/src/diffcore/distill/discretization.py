"""Time discretisations of consistency models (Song et al. 2023; Song & Dhariwal 2023, "improved CT").

Consistency models pair adjacent times ``t_n < t_{n+1}`` of a fixed discretisation. Following Karras
et al. 2022 (Eq. 5) the discretisation is spaced with ``rho = 7`` in the data-unit noise level
``s = sigma / alpha`` between ``s_min`` and ``s_max`` (:func:`~diffcore.sampling.grids.karras_sigmas`, the ramp
of the ``karras`` sampling grid); each ``s`` is mapped to the time of any schedule
through the inverse log-SNR (``log_snr = -2 ln s``), so the same code serves VP, VE/EDM and rectified flow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffcore.paths.schedules import Schedule
from diffcore.sampling.grids import karras_sigmas

__all__ = ["ict_num_points", "karras_sigmas", "lognormal_interval_probs", "time_of_data_sigma"]


def time_of_data_sigma(schedule: Schedule, s: Tensor | float) -> Tensor:
    """The time ``t`` at which ``sigma(t) / alpha(t) = s`` (float64)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    if bool((s <= 0).any()):
        raise ValueError("s: expected data-unit noise levels > 0")
    return schedule.t_from_log_snr(-2.0 * torch.log(s)).to(torch.float64)


def ict_num_points(step: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """Points ``N(k)`` of the discretisation at training step ``k`` under the improved-CT curriculum
    (Song & Dhariwal 2023, Eq. 5): ``N(k) = min(s0 2^floor(k / K'), s1) + 1`` with
    ``K' = floor(K / (log2 floor(s1 / s0) + 1))``: the step count doubles in equal stages."""
    if total_steps < 1 or step < 0:
        raise ValueError(
            f"step, total_steps: expected 0 <= step and total_steps >= 1, got {step}, {total_steps}"
        )
    if not 1 <= s0 <= s1:
        raise ValueError(f"s0, s1: expected 1 <= s0 <= s1, got {s0}, {s1}")
    stage = max(total_steps // (int(math.log2(s1 // s0)) + 1), 1)
    return min(s0 * 2 ** (step // stage), s1) + 1


def lognormal_interval_probs(sigmas: Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> Tensor:
    """Probabilities of the ``N - 1`` intervals ``[s_n, s_{n+1}]`` under the improved-CT lognormal proposal
    (Song & Dhariwal 2023, Sec. 3.5): ``p(n) ∝ erf((ln s_{n+1} - P_mean) / (sqrt 2 P_std)) -
    erf((ln s_n - P_mean) / (sqrt 2 P_std))``."""
    if not p_std > 0:
        raise ValueError(f"p_std: expected > 0, got {p_std}")
    cdf = torch.erf((torch.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = (cdf[1:] - cdf[:-1]).clamp_min(0.0)
    return mass / mass.sum()
